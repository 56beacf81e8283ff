//! The pipeline driver: runs every packet of a batch through the stages against one
//! snapshot, and owns the worker-local state the stages need.
//!
//! Invariants:
//! - One `Pipeline` per worker thread; its counters are plain integers owned by that thread.
//! - `now` is set once per batch by the caller (`begin_batch`); no stage reads a clock.
//! - Every packet leaves `process` with `Verdict::Tx` or `Verdict::Drop`, and every drop is
//!   counted under its reason exactly once.
//! - Tracing is opt-in (the `trace` tool, `monitor`); when off it costs one branch per event.
//! - A batch runs in two passes (`batch`): the stages before conntrack read only the packet and
//!   the snapshot, so they may run for the whole batch first; the outcome is as if each packet
//!   went through `process` in turn.
//! - IPv6 frames branch off at the Ethernet dispatch (and after VXLAN decap) to their own path,
//!   `v6`, which reads only the packet and the snapshot and ends them in the first pass;
//!   IPv6-outer VXLAN from the uplink is decapsulated first (`outer6`), its inner frame then
//!   taking the path of its own family.

mod batch;
mod outer6;
mod v6;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::drop::{DropCounters, DropReason};
use crate::flow::{Dir, FlowKey};
use crate::offload;
use crate::packet::{Offload, Packet, PortId, Verdict};
use crate::quiesce::ReaderEpoch;
use crate::snapshot::Snapshot;
use crate::snat::SnatPortRng;
use crate::stages::fragment::Frag;
use crate::stages::{Ctx, arp, classify, conntrack, fragment, route, uplink, vxlan};
use crate::tables::affinity::AffinityTable;
use crate::tables::conntrack::{Conntrack, Now, SweepCursor};
use crate::tables::conntrack6::{self, Conntrack6};
use crate::tables::fragments::{self, FragmentTable};
use crate::tables::policy::PolicyVerdict;
use crate::tables::ports::PortKind;
use crate::tables::services::{FrontendKind, ServiceId};
use crate::wire::{EthernetFrame, ethernet};

/// Worker-local counters besides drops.
#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    pub packets: u64,
    pub forwarded: u64,
    pub new_flows: u64,
    /// First packets whose insert lost a race and adopted another worker's entry.
    pub races_lost: u64,
    pub rejects: u64,
    pub icmp_generated: u64,
    pub expired: u64,
}

/// Where routing sent a packet, for traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    Pod(Ipv4Addr),
    Node(Ipv4Addr),
    Host,
    Uplink,
}

/// One decision of one stage, recorded when tracing is on.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent {
    Received {
        port: PortId,
        kind: Option<PortKind>,
    },
    Decapsulated {
        from: Ipv4Addr,
    },
    Parsed {
        key: FlowKey,
    },
    ConntrackHit {
        dir: Dir,
        xlate: FlowKey,
    },
    ConntrackNew {
        original: FlowKey,
        reply: FlowKey,
        raced: bool,
    },
    Untracked,
    IcmpRelated {
        tracked: bool,
    },
    Service {
        id: ServiceId,
        kind: FrontendKind,
        backend: (Ipv4Addr, u16),
    },
    Rejected,
    Policy {
        ingress: bool,
        pod: Ipv4Addr,
        verdict: PolicyVerdict,
    },
    Snat {
        ip: Ipv4Addr,
        port: u16,
    },
    Generated(&'static str),
    Route(RouteTarget),
    Encapsulated {
        to: Ipv4Addr,
    },
    Verdict(Verdict),
}

/// xorshift64*: cheap per-worker randomness for backend choice. SNAT ports, which an
/// outsider sees, come from `snat::SnatPortRng` instead.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

pub struct Pipeline {
    pub(crate) ct: Arc<Conntrack>,
    pub(crate) affinity: Arc<AffinityTable>,
    pub(crate) rng: Rng,
    pub(crate) snat_rng: SnatPortRng,
    pub(crate) now: Now,
    pub drops: DropCounters,
    pub stats: PipelineStats,
    trace: Option<Vec<TraceEvent>>,
    sweep: SweepCursor,
    /// The current packet's new flow, until routing decides (`conntrack::confirm`).
    pub(crate) pending: conntrack::PendingFlow,
    /// The batch driver's first-pass results, reused from batch to batch.
    staged: Vec<batch::Staged>,
    /// This worker's round counter in `ct.readers()` (grace periods before flushes).
    epoch: Arc<ReaderEpoch>,
    /// What the first fragments of fragmented datagrams got (`stages::fragment`).
    pub(crate) frags: FragmentTable,
    /// IPv6 flows of this worker (`v6::nat`).
    pub(crate) ct6: Conntrack6,
}

/// What the stages before conntrack made of a packet.
#[derive(Clone, Copy, Debug)]
enum Front {
    /// Finished there (an ARP answer).
    Done(Verdict),
    /// A parsed IPv4 packet for conntrack and routing, its context written to the `Ctx` given.
    Ip,
}

impl Pipeline {
    pub fn new(ct: Arc<Conntrack>, affinity: Arc<AffinityTable>, seed: u64) -> Self {
        let epoch = ct.readers().register();
        Self {
            ct,
            affinity,
            rng: Rng::new(seed),
            snat_rng: SnatPortRng::from_os()
                .expect("the OS random source (getrandom) failed: no unpredictable SNAT ports"),
            now: 0,
            drops: DropCounters::default(),
            stats: PipelineStats::default(),
            trace: None,
            sweep: SweepCursor::default(),
            pending: conntrack::PendingFlow::None,
            staged: Vec::new(),
            epoch,
            frags: FragmentTable::new(fragments::SLOTS, seed.rotate_left(32) ^ 0x6672_6167),
            ct6: Conntrack6::new(conntrack6::WORKER_CAPACITY),
        }
    }

    /// Replaces the SNAT port generator (a fixed key makes ports reproducible: tests, tools
    /// that compare two runs).
    pub fn set_snat_rng(&mut self, rng: SnatPortRng) {
        self.snat_rng = rng;
    }

    /// This worker's round counter: a worker loop calls `enter` before loading a round's
    /// snapshot and `leave` once the round no longer uses it (see `quiesce`).
    pub fn epoch(&self) -> &ReaderEpoch {
        &self.epoch
    }

    pub fn conntrack(&self) -> &Arc<Conntrack> {
        &self.ct
    }

    /// Sets the time for the packets that follow (seconds of CLOCK_MONOTONIC).
    pub fn begin_batch(&mut self, now: Now) {
        self.now = now;
    }

    /// Starts recording stage decisions (used by `trace` and `monitor`).
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// Stops recording (and drops what was recorded).
    pub fn disable_trace(&mut self) {
        self.trace = None;
    }

    pub fn is_tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// Returns and clears the recorded decisions.
    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    #[inline]
    pub(crate) fn trace(&mut self, event: impl FnOnce() -> TraceEvent) {
        if let Some(t) = self.trace.as_mut() {
            t.push(event());
        }
    }

    /// Runs every packet of the batch; each packet's `meta.verdict` holds the outcome.
    pub fn process_batch(&mut self, snap: &Snapshot, batch: &mut [Packet]) {
        if self.is_tracing() {
            for pkt in batch.iter_mut() {
                self.process(snap, pkt);
            }
        } else {
            self.process_batch_prefetched(snap, batch);
        }
    }

    /// Runs one packet through the stages and records its verdict.
    pub fn process(&mut self, snap: &Snapshot, pkt: &mut Packet) -> Verdict {
        let result = self.run(snap, pkt);
        self.finish(pkt, result)
    }

    /// Counts a packet's outcome and records its verdict.
    fn finish(&mut self, pkt: &mut Packet, result: Result<Verdict, DropReason>) -> Verdict {
        self.stats.packets += 1;
        let verdict = match result {
            Ok(v) => v,
            Err(reason) => Verdict::Drop(reason),
        };
        match verdict {
            Verdict::Drop(reason) => self.drops.count(reason),
            Verdict::Tx(_) => self.stats.forwarded += 1,
            Verdict::Pending => {}
        }
        pkt.meta.verdict = verdict;
        self.trace(|| TraceEvent::Verdict(verdict));
        verdict
    }

    /// Housekeeping between batches: ages out at most `budget` conntrack buckets.
    pub fn housekeeping(&mut self, budget: usize) -> usize {
        let n = self.ct.sweep(&mut self.sweep, budget, self.now);
        self.stats.expired += n as u64;
        n
    }

    fn run(&mut self, snap: &Snapshot, pkt: &mut Packet) -> Result<Verdict, DropReason> {
        let mut ctx = Ctx::UNSET;
        match self.front(snap, pkt, &mut ctx)? {
            Front::Done(verdict) => Ok(verdict),
            Front::Ip => self.back(snap, pkt, &mut ctx),
        }
    }

    /// The stages before conntrack; they read only the packet and the snapshot. An IPv4
    /// packet's context is written to `ctx` in place (see `Ctx`).
    fn front(
        &mut self,
        snap: &Snapshot,
        pkt: &mut Packet,
        ctx: &mut Ctx,
    ) -> Result<Front, DropReason> {
        let port = pkt.meta.in_port;
        let kind = snap.ports.kind(port);
        self.trace(|| TraceEvent::Received { port, kind });
        let in_kind = kind.ok_or(DropReason::NotForUs)?;
        if pkt.meta.offload != Offload::default() {
            offload::vnet::check_frame(&pkt.meta, pkt.len())?;
        }
        let (ethertype, mut l3) = parse_ethernet(pkt)?;
        if ethertype == ethernet::ETHERTYPE_IPV6 {
            return self.front_ipv6(snap, pkt, in_kind, l3, ctx);
        }
        if in_kind == PortKind::Uplink {
            uplink::accept_destination(snap, pkt, ethertype)?;
        }
        match ethertype {
            ethernet::ETHERTYPE_ARP => return Ok(Front::Done(arp::handle(snap, pkt, in_kind, l3))),
            ethernet::ETHERTYPE_IPV4 => {}
            _ => return Err(DropReason::UnsupportedProtocol),
        }
        let mut from_peer = None;
        if in_kind == PortKind::Uplink
            && let Some(peer) = vxlan::decap(snap, pkt, l3)?
        {
            self.trace(|| TraceEvent::Decapsulated { from: peer });
            let (inner_type, inner_l3) = parse_ethernet(pkt)?;
            if inner_type == ethernet::ETHERTYPE_IPV6 {
                let from = Some(crate::tables::routes::PeerAddr::V4(peer));
                return v6::front(self, snap, pkt, in_kind, inner_l3, from).map(Front::Done);
            }
            if inner_type != ethernet::ETHERTYPE_IPV4 {
                return Err(DropReason::UnsupportedProtocol);
            }
            l3 = inner_l3;
            from_peer = Some(peer);
        }
        classify::ipv4(snap, pkt, in_kind, l3, ctx)?;
        ctx.from_peer = from_peer;
        if in_kind == PortKind::Uplink {
            uplink::check_source(snap, pkt, ctx)?;
        }
        self.trace(|| TraceEvent::Parsed { key: ctx.key });
        Ok(Front::Ip)
    }

    /// Conntrack and routing.
    fn back(
        &mut self,
        snap: &Snapshot,
        pkt: &mut Packet,
        ctx: &mut Ctx,
    ) -> Result<Verdict, DropReason> {
        if ctx.frag != Frag::None {
            return fragment::back(self, snap, pkt, ctx);
        }
        if let Some(answer) = conntrack::track(self, snap, pkt, ctx)? {
            return Ok(answer);
        }
        let verdict = route::route(self, snap, pkt, ctx);
        Ok(conntrack::confirm(self, verdict))
    }
}

/// The effective EtherType and the L3 offset; 802.1Q-tagged frames are not forwarded.
fn parse_ethernet(pkt: &Packet) -> Result<(u16, usize), DropReason> {
    let eth = EthernetFrame::new_checked(pkt.data()).map_err(|_| DropReason::Malformed)?;
    if eth.vlan_id().is_some() {
        return Err(DropReason::UnsupportedProtocol);
    }
    Ok((eth.ethertype(), eth.header_len()))
}

//! criterion group `pipeline`: the in-memory pipeline on one core, in packets per second.
//!
//! - `established_10k`: pod -> ClusterIP -> pod on another node (conntrack hit, DNAT,
//!   VXLAN encap), 10k established TCP flows;
//! - `established_1m`: the same with 1M live flows;
//! - `new_flows`: first packets (TCP SYN) with 10k Services x 10 endpoints and 1k policies;
//!   every timed SYN creates a flow (the pool of 2^20 starts over on an emptied table, and the
//!   bench checks the insert count at the end);
//! - `decap_local`: VXLAN from a peer -> decap -> conntrack -> local pod, 10k flows;
//! - `egress_snat`: pod -> external address, masqueraded, 10k established flows.
//! - `housekeeping_10k`, `housekeeping_1`: one call of the worker's housekeeping step (a
//!   conntrack sweep of 8 buckets, the worker's default budget) over a table of the default
//!   capacity holding 10k established flows, or one (a single bulk flow); throughput counts
//!   the buckets visited;
//! - `ipv6_established_10k`, `ipv6_new_flows`: the IPv6 variants, pod -> pod on another node
//!   (VXLAN on the IPv4 underlay), 10k repeated flows and 1M first packets (SYNs). The IPv6
//!   path has no conntrack, Service DNAT or policy yet (`dataplane/README.md`), so these time
//!   its stateless path: parse, extension-header walk, source checks, routing, encap.
//!
//! Each iteration times one batch of `BATCH` packets through `Pipeline::process_batch`;
//! refilling the batch from the frame templates (the RX copy) is outside the timing. The
//! conntrack memory per flow at 1M flows is printed once, with what backs it (huge pages or not).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::fixture::{self, FIRST_POD, Scale, UPLINK};
use bench::fixture_v6;
use bench::traffic::{answer, tcp_frame, vxlan_frame};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::packet::{Packet, PortId, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig, FlowLimits};
use dataplane::wire::TcpFlags;

const BATCH: usize = 256;
const NOW: u32 = 1_000;

struct Load {
    snap: Snapshot,
    pipe: Pipeline,
    frames: Vec<(PortId, Vec<u8>)>,
    batch: Vec<Packet>,
    cursor: usize,
}

impl Load {
    fn new(scale: Scale, capacity: usize) -> Self {
        Self::with_limits(scale, capacity, FlowLimits::default())
    }

    fn with_limits(scale: Scale, capacity: usize, limits: FlowLimits) -> Self {
        let ct = Arc::new(Conntrack::new(ConntrackConfig {
            capacity,
            limits,
            ..ConntrackConfig::default()
        }));
        let mut pipe = Pipeline::new(ct, Arc::new(AffinityTable::new(1 << 16)), 42);
        pipe.begin_batch(NOW);
        Self {
            snap: fixture::snapshot(scale),
            pipe,
            frames: Vec::new(),
            batch: (0..BATCH).map(|_| Packet::new()).collect(),
            cursor: 0,
        }
    }

    fn run_one(&mut self, port: PortId, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let mut p = Packet::from_frame(frame).expect("frame fits a buffer");
        p.meta.in_port = port;
        let v = self.pipe.process(&self.snap, &mut p);
        (v, p.data().to_vec())
    }

    /// Completes a TCP handshake for the flow whose SYN is `syn` and returns the ACK
    /// template that follows it.
    fn establish(&mut self, port: PortId, syn: &[u8], ack: Vec<u8>) -> (PortId, Vec<u8>) {
        let (v, out) = self.run_one(port, syn);
        let Verdict::Tx(out_port) = v else {
            panic!("SYN not forwarded: {v:?}")
        };
        let synack = answer(&out, TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0), 8472)
            .expect("answerable output");
        let (v, _) = self.run_one(out_port, &synack);
        assert!(matches!(v, Verdict::Tx(_)), "SYN-ACK not forwarded: {v:?}");
        (port, ack)
    }

    /// Times `iters` batches; frames are replayed round robin.
    fn measure(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            for pkt in self.batch.iter_mut() {
                let (port, frame) = &self.frames[self.cursor];
                self.cursor = (self.cursor + 1) % self.frames.len();
                pkt.fill(frame);
                pkt.meta.in_port = *port;
            }
            let start = Instant::now();
            self.pipe.process_batch(&self.snap, &mut self.batch);
            total += start.elapsed();
        }
        total
    }

    fn assert_all_forwarded(&self) {
        let drops: Vec<_> = self.pipe.drops.iter().collect();
        assert!(drops.is_empty(), "benchmark traffic was dropped: {drops:?}");
    }
}

fn pod(i: u32) -> (PortId, Ipv4Addr, dataplane::wire::MacAddr) {
    (
        PortId(FIRST_POD + i as u16),
        fixture::local_pod_ip(i),
        fixture::local_pod_mac(i),
    )
}

/// `flows` established pod -> ClusterIP flows over `scale`.
fn service_flows(scale: Scale, flows: u32, capacity: usize) -> Load {
    let mut load = Load::new(scale, capacity);
    let gw = load.snap.node.gateway_mac;
    for f in 0..flows {
        let (port, ip, mac) = pod(f % scale.local_pods);
        let sport = 10_000 + (f / scale.local_pods) as u16;
        let vip = (fixture::service_vip(f % scale.services), 80);
        let syn = tcp_frame((mac, gw), (ip, sport), vip, TcpFlags::SYN);
        let ack = tcp_frame((mac, gw), (ip, sport), vip, TcpFlags::ACK);
        let entry = load.establish(port, &syn, ack);
        load.frames.push(entry);
    }
    load.assert_all_forwarded();
    load
}

fn bench_established(c: &mut Criterion, id: &str, flows: u32) {
    let scale = Scale {
        services: 1_000,
        endpoints_per_service: 10,
        policies: 100,
        local_pods: 64,
    };
    let mut load = service_flows(scale, flows, flows as usize + flows as usize / 8 + 1024);
    if flows >= 1_000_000 {
        println!(
            "conntrack at {} flows: {} bytes per flow (both directions and the NAT rewrite), {}",
            load.pipe.conntrack().len(),
            load.pipe.conntrack().bytes_per_flow(),
            load.pipe.conntrack().pages()
        );
    }
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(id, |b| b.iter_custom(|iters| load.measure(iters)));
    g.finish();
    load.assert_all_forwarded();
}

fn established_10k(c: &mut Criterion) {
    bench_established(c, "established_10k", 10_000);
}

fn established_1m(c: &mut Criterion) {
    bench_established(c, "established_1m", 1_000_000);
}

fn new_flows(c: &mut Criterion) {
    let scale = Scale {
        services: 10_000,
        endpoints_per_service: 10,
        policies: 1_000,
        local_pods: 64,
    };
    const POOL: u32 = 1 << 20;
    // No limit on unreplied flows: the SYNs here never get a reply, and 2^20 of them from 64
    // pods pass the per-source limit (a defence against floods), which would turn most of
    // the bench into `ct_source_limit` drops.
    let mut load = Load::with_limits(scale, POOL as usize + (POOL as usize) / 8, FlowLimits::NONE);
    let gw = load.snap.node.gateway_mac;
    for f in 0..POOL {
        let (port, ip, mac) = pod(f % scale.local_pods);
        let sport = 1024 + (f / scale.local_pods) as u16;
        let vip = (fixture::service_vip(f % scale.services), 80);
        load.frames
            .push((port, tcp_frame((mac, gw), (ip, sport), vip, TcpFlags::SYN)));
    }
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    // SYNs sent since the table was last emptied: every SYN must be a first packet, so the pool
    // starts over on an empty table (the flush untimed) before any SYN would be sent twice.
    // (`measure` wraps the cursor itself, so the cursor alone cannot tell when to flush.)
    let (mut sent, mut sent_total) = (0usize, 0u64);
    g.bench_function("new_flows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if sent + BATCH > load.frames.len() {
                    load.pipe.conntrack().flush(NOW, |_| true);
                    load.cursor = 0;
                    sent = 0;
                }
                total += load.measure(1);
                sent += BATCH;
                sent_total += BATCH as u64;
            }
            total
        })
    });
    assert_eq!(
        load.pipe.conntrack().stats().inserts,
        sent_total,
        "every SYN new_flows timed must have created a flow"
    );
    g.finish();
    load.assert_all_forwarded();
}

fn decap_local(c: &mut Criterion) {
    let scale = Scale {
        services: 100,
        endpoints_per_service: 10,
        policies: 100,
        local_pods: 64,
    };
    let mut load = Load::new(scale, 16_384);
    let node = load.snap.node.clone();
    for f in 0..10_000u32 {
        let n = f % fixture::REMOTE_NODES;
        let (_, ip, mac) = pod(f % scale.local_pods);
        let remote = (
            Ipv4Addr::new(10, 244, 2 + n as u8, 9),
            20_000 + (f / 16) as u16,
        );
        let wrap = |flags| {
            let inner = tcp_frame((node.vtep_mac, mac), remote, (ip, 8080), flags);
            vxlan_frame(
                (fixture::remote_node_mac(n), node.uplink_mac),
                fixture::remote_node_ip(n),
                node.node_ip,
                node.vxlan_port,
                node.vni,
                &inner,
            )
        };
        let syn = wrap(TcpFlags::SYN);
        let entry = load.establish(UPLINK, &syn, wrap(TcpFlags::ACK));
        load.frames.push(entry);
    }
    load.assert_all_forwarded();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decap_local", |b| {
        b.iter_custom(|iters| load.measure(iters))
    });
    g.finish();
    load.assert_all_forwarded();
}

fn egress_snat(c: &mut Criterion) {
    let scale = Scale {
        services: 100,
        endpoints_per_service: 10,
        policies: 0,
        local_pods: 64,
    };
    let mut load = Load::new(scale, 16_384);
    let gw = load.snap.node.gateway_mac;
    for f in 0..10_000u32 {
        let (port, ip, mac) = pod(f % scale.local_pods);
        let ext = (Ipv4Addr::new(203, 0, 113, 10 + (f % 100) as u8), 443);
        let sport = 30_000 + (f / scale.local_pods) as u16;
        let syn = tcp_frame((mac, gw), (ip, sport), ext, TcpFlags::SYN);
        let ack = tcp_frame((mac, gw), (ip, sport), ext, TcpFlags::ACK);
        let entry = load.establish(port, &syn, ack);
        load.frames.push(entry);
    }
    load.assert_all_forwarded();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("egress_snat", |b| {
        b.iter_custom(|iters| load.measure(iters))
    });
    g.finish();
    load.assert_all_forwarded();
}

/// Buckets the worker's housekeeping visits per call by default (`worker::runtime`).
const SWEEP_BUDGET: usize = 8;

fn bench_housekeeping(c: &mut Criterion, id: &str, flows: u32) {
    let scale = Scale {
        services: 1_000,
        endpoints_per_service: 10,
        policies: 100,
        local_pods: 64,
    };
    let mut load = service_flows(scale, flows, ConntrackConfig::default().capacity);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(SWEEP_BUDGET as u64));
    g.bench_function(id, |b| {
        b.iter(|| std::hint::black_box(load.pipe.housekeeping(SWEEP_BUDGET)))
    });
    g.finish();
    assert_eq!(
        load.pipe.conntrack().len(),
        flows as usize,
        "housekeeping ended live flows"
    );
}

fn housekeeping_10k(c: &mut Criterion) {
    bench_housekeeping(c, "housekeeping_10k", 10_000);
}

fn housekeeping_1(c: &mut Criterion) {
    bench_housekeeping(c, "housekeeping_1", 1);
}

/// `flows` IPv6 TCP segments from the local pods to pods on the remote nodes (VXLAN).
fn ipv6_frames(load: &mut Load, scale: Scale, flows: u32, flags: TcpFlags) {
    let gw = load.snap.node.gateway_mac;
    for f in 0..flows {
        let i = f % scale.local_pods;
        let (port, _, mac) = pod(i);
        let src = (
            fixture_v6::local_pod_ip6(i),
            10_000 + (f / scale.local_pods) as u16,
        );
        let n = f % fixture::REMOTE_NODES;
        let dst = (fixture_v6::remote_pod_ip6(n, 2 + (f % 250) as u16), 8080);
        load.frames
            .push((port, fixture_v6::tcp6_frame((mac, gw), src, dst, flags)));
    }
}

fn bench_ipv6(c: &mut Criterion, id: &str, flows: u32, flags: TcpFlags) {
    // No policies: the IPv6 path refuses the traffic of pods that a policy isolates.
    let scale = Scale {
        services: 1_000,
        endpoints_per_service: 10,
        policies: 0,
        local_pods: 64,
    };
    let mut load = Load::new(scale, 1024);
    load.snap = fixture_v6::snapshot(scale);
    ipv6_frames(&mut load, scale, flows, flags);
    let (port, frame) = load.frames[0].clone();
    let (v, _) = load.run_one(port, &frame);
    assert_eq!(
        v,
        Verdict::Tx(UPLINK),
        "IPv6 benchmark traffic must reach the uplink"
    );
    println!(
        "{id}: no IPv6 conntrack yet, 0 bytes per flow (IPv4: {} bytes)",
        load.pipe.conntrack().bytes_per_flow()
    );
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(id, |b| b.iter_custom(|iters| load.measure(iters)));
    g.finish();
    load.assert_all_forwarded();
}

fn ipv6_established_10k(c: &mut Criterion) {
    bench_ipv6(c, "ipv6_established_10k", 10_000, TcpFlags::ACK);
}

fn ipv6_new_flows(c: &mut Criterion) {
    bench_ipv6(c, "ipv6_new_flows", 1 << 20, TcpFlags::SYN);
}

criterion_group!(
    benches,
    established_10k,
    established_1m,
    new_flows,
    decap_local,
    egress_snat,
    housekeeping_10k,
    housekeeping_1,
    ipv6_established_10k,
    ipv6_new_flows
);
criterion_main!(benches);

//! Property test: random operation sequences against a plain list of flows as the model.
//!
//! UDP flows over small tuple spaces, so original tuples repeat (Existing), reply tuples collide
//! across flows (ReplyTaken) and originals hit other flows' reply tuples (Existing, reply side).
//! Timeouts are the defaults written out: 30 s unreplied, 120 s once a reply was seen.

use proptest::prelude::*;

use super::tests::{CLIENT, VIP, backend, table};
use super::*;
use crate::flow::L4Proto;

#[derive(Clone, Debug)]
enum Op {
    /// client:cport -> VIP:80, reply backend(b):8080 -> client:1000+p.
    Insert {
        cport: u16,
        b: u8,
        p: u16,
    },
    /// The other shape: an original that looks like some flow's reply tuple.
    InsertReplyShaped {
        cport: u16,
        b: u8,
        p: u16,
    },
    Lookup(Probe),
    Packet(Probe),
    Remove(Probe),
    Advance(u32),
    SweepAll,
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    Original { cport: u16 },
    Reply { b: u8, p: u16 },
}

impl Probe {
    fn key(self) -> FlowKey {
        match self {
            Self::Original { cport } => original_shape(cport),
            Self::Reply { b, p } => reply_shape(b, p),
        }
    }
}

fn original_shape(cport: u16) -> FlowKey {
    FlowKey::new(L4Proto::Udp, CLIENT, cport, VIP, 80)
}

fn reply_shape(b: u8, p: u16) -> FlowKey {
    FlowKey::new(L4Proto::Udp, backend(b), 8080, CLIENT, 1000 + p)
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        (0..4u16).prop_map(|cport| Probe::Original { cport }),
        (1..4u8, 0..3u16).prop_map(|(b, p)| Probe::Reply { b, p }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u16, 1..4u8, 0..3u16).prop_map(|(cport, b, p)| Op::Insert { cport, b, p }),
        1 => (0..4u16, 1..4u8, 0..3u16)
            .prop_map(|(cport, b, p)| Op::InsertReplyShaped { cport, b, p }),
        3 => probe().prop_map(Op::Lookup),
        3 => probe().prop_map(Op::Packet),
        1 => probe().prop_map(Op::Remove),
        2 => (0..45u32).prop_map(Op::Advance),
        1 => Just(Op::SweepAll),
    ]
}

#[derive(Clone, Copy, Debug)]
struct ModelFlow {
    original: FlowKey,
    reply: FlowKey,
    backend: u32,
    replied: bool,
    last_seen: Now,
}

#[derive(Default)]
struct Model {
    flows: Vec<ModelFlow>,
}

/// What the tests compare of a hit: direction, translation, backend.
type Seen = (Dir, FlowKey, u32);

impl Model {
    fn live(flow: &ModelFlow, now: Now) -> bool {
        let timeout = if flow.replied { 120 } else { 30 };
        now <= flow.last_seen + timeout
    }

    fn find(&mut self, key: &FlowKey, now: Now) -> Option<(usize, Dir)> {
        self.flows.retain(|f| Self::live(f, now));
        self.flows.iter().enumerate().find_map(|(i, f)| {
            (f.original == *key)
                .then_some((i, Dir::Original))
                .or((f.reply == *key).then_some((i, Dir::Reply)))
        })
    }

    fn seen(&self, i: usize, dir: Dir) -> Seen {
        let f = &self.flows[i];
        match dir {
            Dir::Original => (dir, f.reply.reversed(), f.backend),
            Dir::Reply => (dir, f.original.reversed(), f.backend),
        }
    }

    fn insert(&mut self, flow: &NewFlow, now: Now) -> Result<(bool, Seen), InsertError> {
        if let Some((i, dir)) = self.find(&flow.original, now) {
            return Ok((false, self.seen(i, dir)));
        }
        if self.find(&flow.reply, now).is_some() {
            return Err(InsertError::ReplyTaken);
        }
        self.flows.push(ModelFlow {
            original: flow.original,
            reply: flow.reply,
            backend: flow.backend,
            replied: false,
            last_seen: now,
        });
        Ok((true, self.seen(self.flows.len() - 1, Dir::Original)))
    }
}

fn seen(hit: &Hit) -> Seen {
    (hit.dir, hit.xlate, hit.backend)
}

fn new_flow(original: FlowKey, reply: FlowKey, b: u8) -> NewFlow {
    NewFlow {
        original,
        reply,
        service: 1,
        backend: u32::from(b),
        flags: 0,
        tcp_flags: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn conntrack_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let ct = table(256);
        let mut model = Model::default();
        let mut now: Now = 1;
        for op in ops {
            match op {
                Op::Insert { cport, b, p } | Op::InsertReplyShaped { cport, b, p } => {
                    let (a, z) = (original_shape(cport), reply_shape(b, p));
                    let flow = match op {
                        Op::Insert { .. } => new_flow(a, z, b),
                        _ => new_flow(z, a.reversed(), b),
                    };
                    let got = ct.insert(&flow, now).map(|inserted| match inserted {
                        Inserted::Created(hit) => (true, seen(&hit)),
                        Inserted::Existing(hit) => (false, seen(&hit)),
                    });
                    prop_assert_eq!(got, model.insert(&flow, now), "{:?} at {}", op, now);
                }
                Op::Lookup(probe) => {
                    let expected = model.find(&probe.key(), now).map(|(i, d)| model.seen(i, d));
                    prop_assert_eq!(ct.lookup(&probe.key(), now).map(|h| seen(&h)), expected);
                }
                Op::Packet(probe) => {
                    if let Some(hit) = ct.lookup(&probe.key(), now) {
                        prop_assert_eq!(ct.on_packet(&hit, 0, now), Track::Ok);
                    }
                    if let Some((i, dir)) = model.find(&probe.key(), now) {
                        model.flows[i].last_seen = now;
                        model.flows[i].replied |= dir == Dir::Reply;
                    }
                }
                Op::Remove(probe) => {
                    let removed = ct.lookup(&probe.key(), now).is_some_and(|hit| ct.remove(&hit));
                    let found = model.find(&probe.key(), now);
                    prop_assert_eq!(removed, found.is_some());
                    if let Some((i, _)) = found {
                        model.flows.remove(i);
                    }
                }
                Op::Advance(seconds) => now += seconds,
                Op::SweepAll => {
                    let mut cursor = SweepCursor::default();
                    ct.sweep(&mut cursor, usize::MAX, now);
                    model.flows.retain(|f| Model::live(f, now));
                    prop_assert_eq!(ct.len(), model.flows.len());
                    let mut listed = 0;
                    ct.for_each(now, |_| listed += 1);
                    prop_assert_eq!(listed, model.flows.len());
                }
            }
        }
    }
}

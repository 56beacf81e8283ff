//! The whole pipeline over arbitrary frames on every port kind of a small cluster: it must
//! never panic, and every packet must end with a verdict. The first byte picks the port.
#![no_main]

use std::sync::{Arc, OnceLock};

use bench::fixture::{self, Scale};
use dataplane::packet::{Packet, PortId, Verdict};
use dataplane::pipeline::Pipeline;
use dataplane::snapshot::Snapshot;
use dataplane::tables::affinity::AffinityTable;
use dataplane::tables::conntrack::{Conntrack, ConntrackConfig, Timeouts};
use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        fixture::snapshot(Scale {
            services: 20,
            endpoints_per_service: 3,
            policies: 10,
            local_pods: 4,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&port, frame)) = data.split_first() else { return };
    let ct = Arc::new(Conntrack::new(ConntrackConfig { capacity: 1024, ..ConntrackConfig::default() }));
    let mut pipe = Pipeline::new(ct, Arc::new(AffinityTable::new(64)), 1);
    pipe.begin_batch(100);
    let Some(mut pkt) = Packet::from_frame(frame) else { return };
    pkt.meta.in_port = PortId(u16::from(port % 8));
    let v = pipe.process(snapshot(), &mut pkt);
    assert!(v != Verdict::Pending);
});

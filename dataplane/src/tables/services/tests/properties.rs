//! Properties over arbitrary endpoint lists: every selection is one `selectable` confirms,
//! and the choice does not depend on the order the endpoints were listed in.

use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::spec;
use crate::tables::services::{
    Backend, DEFAULT_MAGLEV_M, FrontendKind, Scheduler, SelectCtx, Selection, ServiceTable,
};

fn arbitrary_backend() -> impl Strategy<Value = Backend> {
    (
        0u8..6,
        8080u16..8083,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(host, port, node_local, serving, terminating)| Backend {
            ip: Ipv4Addr::new(10, 244, 2, host),
            port,
            node_local,
            serving,
            terminating,
            pod: None,
        })
}

fn arbitrary_kind() -> impl Strategy<Value = FrontendKind> {
    prop_oneof![
        Just(FrontendKind::ClusterIp),
        Just(FrontendKind::ExternalIp),
        Just(FrontendKind::LoadBalancer),
        Just(FrontendKind::NodePort),
    ]
}

proptest! {
    #[test]
    fn selections_are_selectable_and_order_free(
        backends in proptest::collection::vec(arbitrary_backend(), 0..12),
        maglev in any::<bool>(),
        internal_local in any::<bool>(),
        external_local in any::<bool>(),
        kind in arbitrary_kind(),
        from_cluster in any::<bool>(),
        values in proptest::collection::vec(any::<u64>(), 1..32),
    ) {
        let build = |backends: Vec<Backend>| {
            let mut s = spec("default/p:http", Ipv4Addr::new(10, 96, 0, 60));
            s.backends = backends;
            s.scheduler = if maglev { Scheduler::Maglev } else { Scheduler::Random };
            s.internal_local = internal_local;
            s.external_local = external_local;
            ServiceTable::build(vec![s], &[], DEFAULT_MAGLEV_M).unwrap()
        };
        let mut reversed = backends.clone();
        reversed.reverse();
        let forward = build(backends);
        let backward = build(reversed);
        let (a, b) = (forward.service(1).unwrap(), backward.service(1).unwrap());
        for value in values {
            let ctx = SelectCtx { kind, from_cluster, flow_hash: value, random: value };
            let picked = a.select(&ctx);
            if let Selection::Backend(i) = picked {
                let chosen = &a.backends()[i as usize];
                prop_assert!(chosen.serving);
                prop_assert_eq!(a.selectable(&ctx, chosen.ip, chosen.port), Some(i));
            }
            let same = match (picked, b.select(&ctx)) {
                (Selection::Backend(x), Selection::Backend(y)) => a.backends()[x as usize] == b.backends()[y as usize],
                (x, y) => x == y,
            };
            prop_assert!(same);
        }
    }
}

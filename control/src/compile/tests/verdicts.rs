//! Policy verdicts with policy names, and row checks against a compiled table.

use std::net::Ipv4Addr;

use dataplane::flow::L4Proto;
use dataplane::tables::policy::{PolicyTable, PolicyVerdict};

/// A verdict with policy names, as a user reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    Open,
    Allow(&'a str),
    Deny(Option<&'a str>),
}

fn seen(table: &PolicyTable, verdict: PolicyVerdict) -> Seen<'_> {
    let name = |id| table.policy_name(id).unwrap();
    match verdict {
        PolicyVerdict::NotIsolated => Seen::Open,
        PolicyVerdict::Allowed(id) => Seen::Allow(name(id)),
        PolicyVerdict::Denied(id) => Seen::Deny(id.map(name)),
    }
}

/// Ingress rows: (destination pod, source address, protocol, port, expected).
pub fn assert_ingress(
    table: &PolicyTable,
    rows: &[(Ipv4Addr, Ipv4Addr, L4Proto, u16, Seen<'static>)],
) {
    for (dst, src, proto, port, want) in rows {
        let got = seen(table, table.check_ingress(*dst, *src, *proto, *port));
        assert_eq!(&got, want, "ingress to {dst} from {src} {proto:?}/{port}");
    }
}

/// Egress rows: (source pod, destination address, protocol, port, expected).
pub fn assert_egress(
    table: &PolicyTable,
    rows: &[(Ipv4Addr, Ipv4Addr, L4Proto, u16, Seen<'static>)],
) {
    for (src, dst, proto, port, want) in rows {
        let got = seen(table, table.check_egress(*src, *dst, *proto, *port));
        assert_eq!(&got, want, "egress from {src} to {dst} {proto:?}/{port}");
    }
}

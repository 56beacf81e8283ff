//! The record index: every record kind of the specification, negative answers, case.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{SOA, answers, index, lookup, name, service, slice};
use crate::dns::{RecordIndex, ZoneConfig};
use crate::settings::ClusterSettings;

#[test]
fn cluster_ip_service_has_a_ptr_and_srv_for_named_ports_only() {
    let index = index(&service(
        "shop",
        "web",
        "10.96.0.20",
        &["http:80/TCP", "dns:53/UDP"],
    ));
    assert_eq!(
        answers(&index, "web.shop.svc.cluster.local.", RecordType::A),
        ["web.shop.svc.cluster.local. 5 IN A 10.96.0.20"]
    );
    assert_eq!(
        answers(&index, "20.0.96.10.in-addr.arpa.", RecordType::PTR),
        ["20.0.96.10.in-addr.arpa. 5 IN PTR web.shop.svc.cluster.local."]
    );
    let (code, srv, _, additional) = lookup(
        &index,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    assert_eq!(code, ResponseCode::NoError);
    assert_eq!(
        srv,
        ["_http._tcp.web.shop.svc.cluster.local. 5 IN SRV 0 100 80 web.shop.svc.cluster.local."]
    );
    assert_eq!(
        additional,
        ["web.shop.svc.cluster.local. 5 IN A 10.96.0.20"]
    );
    assert_eq!(
        answers(
            &index,
            "_dns._udp.web.shop.svc.cluster.local.",
            RecordType::SRV
        ),
        ["_dns._udp.web.shop.svc.cluster.local. 5 IN SRV 0 100 53 web.shop.svc.cluster.local."]
    );
    // The port is UDP, not TCP: no such name.
    let (code, ..) = lookup(
        &index,
        "_dns._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    assert_eq!(code, ResponseCode::NXDomain);
}

#[test]
fn unnamed_ports_have_no_srv() {
    let index = index(&service("default", "single", "10.96.0.21", &[":8080/TCP"]));
    assert_eq!(
        answers(&index, "single.default.svc.cluster.local.", RecordType::A).len(),
        1
    );
    // Nothing below the Service name exists.
    for qname in [
        "_tcp.single.default.svc.cluster.local.",
        "_8080._tcp.single.default.svc.cluster.local.",
    ] {
        let (code, answers, authority, _) = lookup(&index, qname, RecordType::SRV).unwrap();
        assert_eq!(
            (code, answers.len()),
            (ResponseCode::NXDomain, 0),
            "{qname}"
        );
        assert_eq!(authority, [SOA]);
    }
}

#[test]
fn matching_ignores_case_and_answers_in_the_question_spelling() {
    let index = index(&service("shop", "web", "10.96.0.20", &["http:80/TCP"]));
    assert_eq!(
        answers(&index, "WEB.Shop.SVC.cluster.LOCAL.", RecordType::A),
        ["WEB.Shop.SVC.cluster.LOCAL. 5 IN A 10.96.0.20"]
    );
    assert_eq!(
        answers(
            &index,
            "_HTTP._Tcp.web.shop.svc.cluster.local.",
            RecordType::SRV
        )
        .len(),
        1
    );
}

const HEADLESS: &str = "db";

fn headless_index(extra_spec: &str, endpoints: &[&str]) -> RecordIndex {
    let svc = service("data", HEADLESS, "None", &["pg:5432/TCP", ":9187/TCP"]);
    let svc = svc.replace("spec:\n", &format!("spec:\n{extra_spec}"));
    index(&(svc + &slice("data", HEADLESS, endpoints)))
}

#[test]
fn headless_service_publishes_ready_endpoints_with_hostnames() {
    let index = headless_index(
        "",
        &["10.244.1.5:db-0", "10.244.2.7:db-1", "10.244.3.9:db-2!"],
    );
    assert_eq!(
        answers(&index, "db.data.svc.cluster.local.", RecordType::A),
        [
            "db.data.svc.cluster.local. 5 IN A 10.244.1.5",
            "db.data.svc.cluster.local. 5 IN A 10.244.2.7"
        ]
    );
    assert_eq!(
        answers(&index, "db-1.db.data.svc.cluster.local.", RecordType::A),
        ["db-1.db.data.svc.cluster.local. 5 IN A 10.244.2.7"]
    );
    // The not-ready endpoint has no name at all.
    let (code, ..) = lookup(&index, "db-2.db.data.svc.cluster.local.", RecordType::A).unwrap();
    assert_eq!(code, ResponseCode::NXDomain);
    // SRV: one per (named port, ready hostname); the unnamed port has none.
    let (_, srv, _, additional) = lookup(
        &index,
        "_pg._tcp.db.data.svc.cluster.local.",
        RecordType::SRV,
    )
    .unwrap();
    assert_eq!(
        srv,
        [
            "_pg._tcp.db.data.svc.cluster.local. 5 IN SRV 0 100 5432 db-0.db.data.svc.cluster.local.",
            "_pg._tcp.db.data.svc.cluster.local. 5 IN SRV 0 100 5432 db-1.db.data.svc.cluster.local."
        ]
    );
    assert_eq!(
        additional,
        [
            "db-0.db.data.svc.cluster.local. 5 IN A 10.244.1.5",
            "db-1.db.data.svc.cluster.local. 5 IN A 10.244.2.7"
        ]
    );
    assert_eq!(
        answers(&index, "5.1.244.10.in-addr.arpa.", RecordType::PTR),
        ["5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.data.svc.cluster.local."]
    );
    // The not-ready address is in the pod range, so its reverse name is ours and absent.
    let (code, _, authority, _) =
        lookup(&index, "9.3.244.10.in-addr.arpa.", RecordType::PTR).unwrap();
    assert_eq!(code, ResponseCode::NXDomain);
    assert_eq!(
        authority,
        [
            "in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5"
        ]
    );
}

#[test]
fn publish_not_ready_addresses_and_the_legacy_annotation_publish_every_endpoint() {
    let endpoints = ["10.244.1.5:db-0!", "10.244.2.7:db-1"];
    let by_spec = headless_index("  publishNotReadyAddresses: true\n", &endpoints);
    let annotated = {
        let svc = service("data", HEADLESS, "None", &["pg:5432/TCP"]).replace(
            "  namespace: data\n",
            "  namespace: data\n  annotations:\n    service.alpha.kubernetes.io/tolerate-unready-endpoints: \"true\"\n",
        );
        index(&(svc + &slice("data", HEADLESS, &endpoints)))
    };
    for index in [by_spec, annotated] {
        assert_eq!(
            answers(&index, "db.data.svc.cluster.local.", RecordType::A).len(),
            2
        );
        assert_eq!(
            answers(&index, "db-0.db.data.svc.cluster.local.", RecordType::A),
            ["db-0.db.data.svc.cluster.local. 5 IN A 10.244.1.5"]
        );
        assert_eq!(
            answers(
                &index,
                "_pg._tcp.db.data.svc.cluster.local.",
                RecordType::SRV
            )
            .len(),
            2
        );
    }
}

#[test]
fn endpoints_without_hostname_are_named_by_their_dashed_address() {
    let index = headless_index("", &["10.244.1.5", "10.244.2.7:Bad_Name?"]);
    assert_eq!(
        answers(
            &index,
            "_pg._tcp.db.data.svc.cluster.local.",
            RecordType::SRV
        ),
        [
            "_pg._tcp.db.data.svc.cluster.local. 5 IN SRV 0 100 5432 10-244-1-5.db.data.svc.cluster.local.",
            "_pg._tcp.db.data.svc.cluster.local. 5 IN SRV 0 100 5432 10-244-2-7.db.data.svc.cluster.local."
        ]
    );
    assert_eq!(
        answers(
            &index,
            "10-244-2-7.db.data.svc.cluster.local.",
            RecordType::A
        ),
        ["10-244-2-7.db.data.svc.cluster.local. 5 IN A 10.244.2.7"]
    );
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    for endpoints in [&[][..], &["10.244.1.5:db-0!"][..]] {
        let index = headless_index("", endpoints);
        let (code, answers, authority, _) =
            lookup(&index, "db.data.svc.cluster.local.", RecordType::A).unwrap();
        assert_eq!(code, ResponseCode::NXDomain, "{endpoints:?}");
        assert!(answers.is_empty());
        assert_eq!(authority, [SOA]);
    }
}

#[test]
fn selectorless_headless_service_uses_its_endpoints_object_when_no_slice_exists() {
    let endpoints = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: legacy\n  namespace: data\nsubsets:\n- addresses:\n  - ip: 10.1.0.5\n    hostname: primary\n  notReadyAddresses:\n  - ip: 10.1.0.6\n  ports:\n  - name: pg\n    port: 5432\n";
    let index = index(&(service("data", "legacy", "None", &["pg:5432/TCP"]) + endpoints));
    assert_eq!(
        answers(&index, "legacy.data.svc.cluster.local.", RecordType::A),
        ["legacy.data.svc.cluster.local. 5 IN A 10.1.0.5"]
    );
    assert_eq!(
        answers(
            &index,
            "_pg._tcp.legacy.data.svc.cluster.local.",
            RecordType::SRV
        ),
        [
            "_pg._tcp.legacy.data.svc.cluster.local. 5 IN SRV 0 100 5432 primary.legacy.data.svc.cluster.local."
        ]
    );
}

#[test]
fn external_name_is_a_cname_followed_inside_the_zone() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: www.Example.com\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: alias\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: web.shop.svc.cluster.local\n---\n";
    let index = index(&(yaml.to_owned() + &service("shop", "web", "10.96.0.20", &[":80/TCP"])));
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        assert_eq!(
            answers(&index, "ext.default.svc.cluster.local.", qtype),
            ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
        );
    }
    assert_eq!(
        answers(&index, "alias.default.svc.cluster.local.", RecordType::A),
        [
            "alias.default.svc.cluster.local. 5 IN CNAME web.shop.svc.cluster.local.",
            "web.shop.svc.cluster.local. 5 IN A 10.96.0.20"
        ]
    );
}

#[test]
fn pod_names_are_synthesized_from_canonical_dashed_addresses() {
    let index = index("");
    assert_eq!(
        answers(
            &index,
            "10-244-1-5.default.pod.cluster.local.",
            RecordType::A
        ),
        ["10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"]
    );
    assert!(
        answers(
            &index,
            "10-244-1-5.default.pod.cluster.local.",
            RecordType::AAAA
        )
        .is_empty()
    );
    for bad in [
        "10-244-1-256.default.pod.cluster.local.",
        "10-244-01-5.default.pod.cluster.local.",
        "10-244-1.default.pod.cluster.local.",
        "x.10-244-1-5.default.pod.cluster.local.",
    ] {
        let (code, _, authority, _) = lookup(&index, bad, RecordType::A).unwrap();
        assert_eq!(code, ResponseCode::NXDomain, "{bad}");
        assert_eq!(authority, [SOA]);
    }
    for parent in ["default.pod.cluster.local.", "pod.cluster.local."] {
        let (code, answers, authority, _) = lookup(&index, parent, RecordType::A).unwrap();
        assert_eq!(
            (code, answers.len(), authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
    }
}

#[test]
fn zone_apex_has_soa_ns_and_the_schema_version() {
    let index = index("");
    assert_eq!(
        answers(&index, "dns-version.cluster.local.", RecordType::TXT),
        ["dns-version.cluster.local. 5 IN TXT 1.1.0"]
    );
    assert_eq!(answers(&index, "cluster.local.", RecordType::SOA), [SOA]);
    let (_, ns, _, glue) = lookup(&index, "cluster.local.", RecordType::NS).unwrap();
    assert_eq!(ns, ["cluster.local. 5 IN NS ns.dns.cluster.local."]);
    assert_eq!(glue, ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]);
}

#[test]
fn existing_names_without_the_type_and_empty_non_terminals_are_nodata() {
    let index = index(&service("shop", "web", "10.96.0.20", &["http:80/TCP"]));
    for (qname, qtype) in [
        ("web.shop.svc.cluster.local.", RecordType::AAAA),
        ("web.shop.svc.cluster.local.", RecordType::TXT),
        ("shop.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("_tcp.web.shop.svc.cluster.local.", RecordType::SRV),
    ] {
        let (code, answers, authority, _) = lookup(&index, qname, qtype).unwrap();
        assert_eq!(code, ResponseCode::NoError, "{qname} {qtype}");
        assert!(answers.is_empty(), "{qname} {qtype}");
        assert_eq!(authority, [SOA], "{qname} {qtype}");
    }
    for qname in [
        "nope.shop.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "x.cluster.local.",
    ] {
        let (code, _, authority, _) = lookup(&index, qname, RecordType::A).unwrap();
        assert_eq!(code, ResponseCode::NXDomain, "{qname}");
        assert_eq!(authority, [SOA]);
    }
}

#[test]
fn names_outside_the_zones_are_not_answered() {
    let index = index(&service("shop", "web", "10.96.0.20", &["http:80/TCP"]));
    for qname in [
        "example.com.",
        "local.",
        "cluster.local.example.",
        "8.8.8.8.in-addr.arpa.",
        "96.10.in-addr.arpa.",
    ] {
        assert_eq!(lookup(&index, qname, RecordType::A), None, "{qname}");
    }
}

#[test]
fn zone_override_and_soa_serial_follow_the_config_and_generation() {
    let mut state = super::state(&service("shop", "web", "10.96.0.20", &["http:80/TCP"]));
    state.set_generation(42);
    let zone = name("Corp.Example.");
    let config = ZoneConfig::from_settings(&ClusterSettings::default(), Some(&zone)).unwrap();
    let index = RecordIndex::build(&state, &config);
    assert_eq!(index.zone().to_ascii(), "corp.example.");
    assert_eq!(
        answers(&index, "web.shop.svc.corp.example.", RecordType::A),
        ["web.shop.svc.corp.example. 5 IN A 10.96.0.20"]
    );
    assert_eq!(
        lookup(&index, "web.shop.svc.cluster.local.", RecordType::A),
        None
    );
    let (_, _, authority, _) = lookup(&index, "nope.corp.example.", RecordType::A).unwrap();
    assert_eq!(
        authority,
        [
            "corp.example. 5 IN SOA ns.dns.corp.example. hostmaster.corp.example. 42 7200 1800 86400 5"
        ]
    );
}

#[test]
fn invalid_names_are_skipped_not_escaped() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: \"bad name.example.com\"\n---\n";
    let index = index(&(yaml.to_owned() + &service("shop", "we.b", "10.96.0.20", &[])));
    let (code, ..) = lookup(&index, "ext.default.svc.cluster.local.", RecordType::CNAME).unwrap();
    assert_eq!(code, ResponseCode::NXDomain);
    assert_eq!(
        lookup(&index, "20.0.96.10.in-addr.arpa.", RecordType::PTR)
            .unwrap()
            .0,
        ResponseCode::NXDomain
    );
}

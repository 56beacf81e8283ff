//! The protocol core: literal messages in, literal or decoded replies out.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

use super::{index, name, service, slice};
use crate::dns::{RecordIndex, Reply, Transport, respond, server_failure};

fn web_index() -> RecordIndex {
    index(&service("shop", "web", "10.96.0.20", &["http:80/TCP"]))
}

/// A query for `qname`/`qtype` with id 7, RD set, and an OPT advertising `payload` if given.
fn query(qname: &str, qtype: RecordType, payload: Option<u16>) -> Message {
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name(qname), qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message
}

fn ask(index: &RecordIndex, message: &Message, transport: Transport) -> Message {
    match respond(index, &message.to_vec().unwrap(), transport, false) {
        Reply::Send(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("no reply: {other:?}"),
    }
}

#[test]
fn a_literal_query_gets_the_literal_answer() {
    #[rustfmt::skip]
    let question: &[u8] = &[
        3, b'w', b'e', b'b', 4, b's', b'h', b'o', b'p', 3, b's', b'v', b'c',
        7, b'c', b'l', b'u', b's', b't', b'e', b'r', 5, b'l', b'o', b'c', b'a', b'l', 0,
        0, 1, 0, 1, // A, IN
    ];
    let mut query = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(question);
    // id, QR AA RD, NOERROR, one question, one answer; the answer's owner is a pointer to
    // the question name at offset 12, TTL 5, 10.96.0.20.
    let mut expected = vec![0xbe, 0xef, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
    expected.extend_from_slice(question);
    expected.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 96, 0, 20]);
    assert_eq!(
        respond(&web_index(), &query, Transport::Udp, false),
        Reply::Send(expected)
    );
}

#[test]
fn messages_without_a_header_or_that_are_responses_get_no_reply() {
    let index = web_index();
    assert_eq!(respond(&index, &[], Transport::Udp, false), Reply::Drop);
    assert_eq!(
        respond(
            &index,
            &[0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0],
            Transport::Udp,
            false
        ),
        Reply::Drop
    );
    let mut response = query("web.shop.svc.cluster.local.", RecordType::A, None);
    response.metadata.message_type = MessageType::Response;
    assert_eq!(
        respond(&index, &response.to_vec().unwrap(), Transport::Udp, false),
        Reply::Drop
    );
}

#[test]
fn an_undecodable_body_gets_formerr_with_the_id() {
    let index = web_index();
    // One question announced, three bytes of a label that never ends.
    let garbage = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'a', b'b',
    ];
    let formerr = vec![0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        respond(&index, &garbage, Transport::Udp, false),
        Reply::Send(formerr.clone())
    );
    // A header alone that promises an answer record.
    let promise = [0x12, 0x34, 0x01, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];
    assert_eq!(
        respond(&index, &promise, Transport::Tcp, false),
        Reply::Send(formerr)
    );
}

#[test]
fn unsupported_requests_get_their_error_codes() {
    let index = web_index();
    let code = |message: &Message| ask(&index, message, Transport::Udp).metadata.response_code;
    let mut two = query("web.shop.svc.cluster.local.", RecordType::A, None);
    two.add_query(Query::query(
        name("web.shop.svc.cluster.local."),
        RecordType::AAAA,
    ));
    assert_eq!(code(&two), ResponseCode::FormErr);
    let mut none = query("web.shop.svc.cluster.local.", RecordType::A, None);
    none.queries.clear();
    assert_eq!(code(&none), ResponseCode::FormErr);
    let mut notify = query("web.shop.svc.cluster.local.", RecordType::SOA, None);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(code(&notify), ResponseCode::NotImp);
    let mut chaos = query("version.bind.", RecordType::TXT, None);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(code(&chaos), ResponseCode::Refused);
    assert_eq!(
        code(&query("cluster.local.", RecordType::AXFR, None)),
        ResponseCode::Refused
    );
    let mut future = query("web.shop.svc.cluster.local.", RecordType::A, Some(1232));
    future.edns.as_mut().unwrap().set_version(1);
    let reply = ask(&index, &future, Transport::Udp);
    // BADVERS is 16, which decodes as BADSIG (TSIG shares the number).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert!(reply.edns.is_some());
}

#[test]
fn names_outside_the_zone_are_refused_or_forwarded() {
    let index = web_index();
    let outside = query("example.com.", RecordType::A, None);
    let reply = ask(&index, &outside, Transport::Udp);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.authoritative);
    assert_eq!(reply.queries, outside.queries);
    let bytes = outside.to_vec().unwrap();
    assert_eq!(
        respond(&index, &bytes, Transport::Udp, true),
        Reply::Forward
    );
}

#[test]
fn a_cname_leaving_the_zone_is_completed_from_the_upstream_when_there_is_one() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: www.example.com\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: alias\n  namespace: default\nspec:\n  type: ExternalName\n  externalName: web.shop.svc.cluster.local\n---\n";
    let index = index(&(yaml.to_owned() + &service("shop", "web", "10.96.0.20", &[":80/TCP"])));
    let ask = |qname: &str, qtype, forwarding| {
        let bytes = query(qname, qtype, None).to_vec().unwrap();
        respond(&index, &bytes, Transport::Udp, forwarding)
    };
    // Without an upstream, and for the CNAME itself, or a chain ending inside: answered here.
    for (qname, qtype, forwarding) in [
        ("ext.default.svc.cluster.local.", RecordType::A, false),
        ("ext.default.svc.cluster.local.", RecordType::CNAME, true),
        ("alias.default.svc.cluster.local.", RecordType::A, true),
    ] {
        assert!(
            matches!(ask(qname, qtype, forwarding), Reply::Send(_)),
            "{qname} {qtype}"
        );
    }
    let Reply::Chase(chase) = ask("ext.default.svc.cluster.local.", RecordType::AAAA, true) else {
        panic!("no chase");
    };
    let upstream_query = Message::from_vec(&chase.upstream_query().unwrap()).unwrap();
    assert_eq!(upstream_query.metadata.id, 7);
    assert!(upstream_query.metadata.recursion_desired);
    assert_eq!(
        upstream_query.queries,
        [Query::query(name("www.example.com."), RecordType::AAAA)]
    );

    // The upstream answers NXDOMAIN with its SOA: both carried over after the CNAME.
    let mut upstream = Message::response(7, OpCode::Query);
    upstream.metadata.response_code = ResponseCode::NXDomain;
    upstream.queries = upstream_query.queries.clone();
    let soa = "example.com. 60 IN SOA ns.example.com. admin.example.com. 1 2 3 4 60";
    upstream.add_authority(hickory_proto::rr::Record::from_rdata(
        name("example.com."),
        60,
        hickory_proto::rr::RData::SOA(hickory_proto::rr::rdata::SOA::new(
            name("ns.example.com."),
            name("admin.example.com."),
            1,
            2,
            3,
            4,
            60,
        )),
    ));
    let completed = chase
        .clone()
        .complete(Some(&upstream.to_vec().unwrap()))
        .unwrap();
    let completed = Message::from_vec(&completed).unwrap();
    assert_eq!(completed.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(completed.answers.len(), 1);
    assert_eq!(completed.authorities[0].to_string(), soa);
    // No upstream reply: the chain alone.
    let alone = Message::from_vec(&chase.complete(None).unwrap()).unwrap();
    assert_eq!(alone.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        alone.answers[0].to_string(),
        "ext.default.svc.cluster.local. 5 IN CNAME www.example.com."
    );
}

#[test]
fn edns_is_answered_with_our_payload_size_only_when_asked() {
    let index = web_index();
    let plain = ask(
        &index,
        &query("web.shop.svc.cluster.local.", RecordType::A, None),
        Transport::Udp,
    );
    assert!(plain.edns.is_none());
    let with = ask(
        &index,
        &query("web.shop.svc.cluster.local.", RecordType::A, Some(4096)),
        Transport::Udp,
    );
    assert_eq!(with.edns.as_ref().map(Edns::max_payload), Some(1232));
    assert_eq!(with.answers.len(), 1);
    assert!(with.metadata.authoritative && with.metadata.recursion_desired);
}

/// A headless Service `big` with `count` ready endpoints 10.244.0.1…
fn big_index(count: usize) -> RecordIndex {
    let ips: Vec<String> = (1..=count)
        .map(|i| format!("10.244.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    index(&(service("default", "big", "None", &[":80/TCP"]) + &slice("default", "big", &ips)))
}

#[test]
fn udp_answers_over_the_clients_limit_are_truncated_and_tcp_gets_them_whole() {
    let qname = "big.default.svc.cluster.local.";
    // 20 A records fit in 512 bytes (12 + 35 + 20 * 16).
    let small = ask(
        &big_index(20),
        &query(qname, RecordType::A, None),
        Transport::Udp,
    );
    assert!(!small.metadata.truncation);
    assert_eq!(small.answers.len(), 20);

    let index = big_index(100);
    let plain = query(qname, RecordType::A, None).to_vec().unwrap();
    let Reply::Send(truncated) = respond(&index, &plain, Transport::Udp, false) else {
        panic!("no reply");
    };
    assert!(truncated.len() <= 512);
    let truncated = Message::from_vec(&truncated).unwrap();
    assert!(truncated.metadata.truncation);
    assert!(truncated.answers.is_empty());
    assert_eq!(truncated.queries.len(), 1);
    // 100 records (1647 bytes) exceed even a 4096-byte EDNS client's UDP limit (capped at 1232).
    let edns = ask(
        &index,
        &query(qname, RecordType::A, Some(4096)),
        Transport::Udp,
    );
    assert!(edns.metadata.truncation && edns.answers.is_empty() && edns.edns.is_some());
    let whole = ask(&index, &query(qname, RecordType::A, None), Transport::Tcp);
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 100);
}

#[test]
fn server_failure_echoes_id_and_question() {
    let outside = query("example.com.", RecordType::A, Some(1232));
    let reply = Message::from_vec(&server_failure(&outside.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(reply.metadata.id, 7);
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(reply.queries, outside.queries);
    assert_eq!(server_failure(&[1, 2, 3]), None);
}

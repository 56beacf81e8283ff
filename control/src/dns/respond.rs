//! The protocol core: the bytes of one query in, what to send back out. No I/O and no clock,
//! so every rule here is tested with literal messages.
//!
//! Rules:
//! - Fewer than 12 bytes (no header, so no id to answer to) or a response: no reply.
//! - A header followed by anything that does not decode, or a count of questions other than
//!   one: FORMERR. Another opcode than QUERY: NOTIMP. EDNS version above 0: BADVERS.
//!   A class other than IN, or a zone transfer: REFUSED.
//! - Names inside the zone: the [`RecordIndex`] answer, authoritative (AA set).
//! - Names outside: [`Reply::Forward`] when an upstream is configured, else REFUSED.
//! - An answer ending in a CNAME to an outside name (an ExternalName Service) is completed
//!   with the upstream's records for the target when an upstream is configured
//!   ([`Reply::Chase`]), and sent as the CNAME chain alone otherwise.
//! - A query with an EDNS OPT gets one back advertising [`UDP_PAYLOAD_LIMIT`].
//! - Over UDP, a reply larger than the client's limit (512 bytes, or its EDNS payload size
//!   capped at [`UDP_PAYLOAD_LIMIT`]) is replaced by its header with TC set, the question and
//!   the OPT, so the client retries over TCP, where the limit is 65535.

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::index::RecordIndex;

/// The largest UDP reply sent, whatever the client advertises: the DNS Flag Day 2020 value,
/// which avoids IP fragmentation on common paths.
pub const UDP_PAYLOAD_LIMIT: u16 = 1232;

/// Largest classic (non-EDNS) UDP reply.
const CLASSIC_UDP_LIMIT: usize = 512;

/// Largest DNS message over TCP (the length prefix is 16 bits).
const TCP_LIMIT: usize = 65535;

/// How the query arrived, which bounds the reply's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes to the client.
    Send(Vec<u8>),
    /// The name is outside the zone and an upstream is configured: pass the query on as is.
    Forward,
    /// The answer ends in a CNAME to a name outside the zone and an upstream is configured:
    /// ask it for the target ([`Chase::upstream_query`]) and send [`Chase::complete`].
    Chase(Box<Chase>),
    /// Send nothing: too short to carry an id, or not a query.
    Drop,
}

/// The reply to `query` from `index`; `forwarding` says whether an upstream takes the names
/// outside the zone.
pub fn respond(index: &RecordIndex, query: &[u8], transport: Transport, forwarding: bool) -> Reply {
    let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
        return Reply::Drop;
    };
    if header.metadata.message_type == MessageType::Response {
        return Reply::Drop;
    }
    let Ok(request) = Message::from_vec(query) else {
        return finish(
            error_reply(&header.metadata, &[], None, ResponseCode::FormErr),
            TCP_LIMIT,
        );
    };
    let edns = request.edns.as_ref().map(|_| server_edns());
    let limit = size_limit(&request, transport);
    let fail = |code| {
        finish(
            error_reply(&request.metadata, &request.queries, edns.clone(), code),
            limit,
        )
    };
    if request.metadata.op_code != OpCode::Query {
        return fail(ResponseCode::NotImp);
    }
    let [question] = request.queries.as_slice() else {
        return fail(ResponseCode::FormErr);
    };
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return fail(ResponseCode::BADVERS);
    }
    let transfer = matches!(question.query_type(), RecordType::AXFR | RecordType::IXFR);
    if question.query_class() != DNSClass::IN || transfer {
        return fail(ResponseCode::Refused);
    }
    let Some(answer) = index.lookup(question.name(), question.query_type()) else {
        return if forwarding {
            Reply::Forward
        } else {
            fail(ResponseCode::Refused)
        };
    };
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.authoritative = true;
    response.metadata.recursion_available = forwarding;
    response.metadata.response_code = answer.code;
    response.queries = vec![question.clone()];
    response.answers = answer.answers;
    response.authorities = answer.authorities;
    response.additionals = answer.additionals;
    response.edns = edns;
    if forwarding && ends_outside(index, &response) {
        return Reply::Chase(Box::new(Chase { response, limit }));
    }
    finish(response, limit)
}

/// Whether the answer is a CNAME chain whose last target this index does not answer for
/// (and the question asked for the target's data, not for the CNAME itself).
fn ends_outside(index: &RecordIndex, response: &Message) -> bool {
    let asked = response.queries.first().map(Query::query_type);
    let target = match response.answers.last().map(|r| &r.data) {
        Some(RData::CNAME(target)) => &target.0,
        _ => return false,
    };
    !matches!(asked, Some(RecordType::CNAME | RecordType::ANY) | None) && !index.answers_for(target)
}

/// An answer ending in a CNAME to an outside name, waiting for the upstream's records of it
/// (as the kubernetes/dns specification's ExternalName example shows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chase {
    response: Message,
    limit: usize,
}

impl Chase {
    /// The query for the last CNAME target, the question's type, with the client's id.
    pub fn upstream_query(&self) -> Option<Vec<u8>> {
        let Some(RData::CNAME(target)) = self.response.answers.last().map(|r| &r.data) else {
            return None;
        };
        let qtype = self.response.queries.first()?.query_type();
        let mut query = Message::new(self.response.metadata.id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(target.0.clone(), qtype));
        query.to_vec().ok()
    }

    /// The reply: the CNAME chain, then the upstream's answers with its response code (and
    /// its authority section when it had no answer); the chain alone when `upstream` is not
    /// a usable reply.
    pub fn complete(mut self, upstream: Option<&[u8]>) -> Option<Vec<u8>> {
        if let Some(reply) = upstream.and_then(|bytes| Message::from_vec(bytes).ok()) {
            self.response.metadata.response_code = reply.metadata.response_code;
            if reply.answers.is_empty() {
                self.response.authorities = reply.authorities;
            }
            self.response.answers.extend(reply.answers);
        }
        match finish(self.response, self.limit) {
            Reply::Send(bytes) => Some(bytes),
            Reply::Forward | Reply::Chase(_) | Reply::Drop => None,
        }
    }
}

/// SERVFAIL for `query`, for when the upstream did not answer; `None` when `query` has no
/// header.
pub fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(query)).ok()?;
    let request = Message::from_vec(query).ok();
    let questions = request.as_ref().map_or(&[][..], |r| r.queries.as_slice());
    let edns = request
        .as_ref()
        .and_then(|r| r.edns.as_ref())
        .map(|_| server_edns());
    match finish(
        error_reply(&header.metadata, questions, edns, ResponseCode::ServFail),
        TCP_LIMIT,
    ) {
        Reply::Send(bytes) => Some(bytes),
        Reply::Forward | Reply::Chase(_) | Reply::Drop => None,
    }
}

/// The OPT record of our replies.
fn server_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD_LIMIT);
    edns
}

/// The largest reply the client takes over `transport`.
fn size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => TCP_LIMIT,
        Transport::Udp => match &request.edns {
            Some(edns) => usize::from(edns.max_payload().clamp(512, UDP_PAYLOAD_LIMIT)),
            None => CLASSIC_UDP_LIMIT,
        },
    }
}

/// A reply with no records and `code`, echoing the questions.
fn error_reply(
    request: &Metadata,
    questions: &[Query],
    edns: Option<Edns>,
    code: ResponseCode,
) -> Message {
    let mut reply = Message::response(request.id, request.op_code);
    reply.metadata = Metadata::response_from_request(request);
    reply.metadata.response_code = code;
    reply.queries = questions.to_vec();
    reply.edns = edns;
    reply
}

/// `message` encoded, truncated to its header, questions and OPT (TC set) when it exceeds
/// `limit`; SERVFAIL when it cannot be encoded at all.
fn finish(message: Message, limit: usize) -> Reply {
    match message.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Reply::Send(bytes),
        Ok(_) => message.truncate().to_vec().map_or(Reply::Drop, Reply::Send),
        Err(_) => {
            let failure = error_reply(
                &message.metadata,
                &message.queries,
                message.edns.clone(),
                ResponseCode::ServFail,
            );
            failure.to_vec().map_or(Reply::Drop, Reply::Send)
        }
    }
}

/// An upstream's `reply` to the client's `query`, as sent to the client: as is when it fits
/// the client's limit over `transport`, else truncated like a local answer (TC set); SERVFAIL
/// when a reply too large cannot be decoded to truncate it.
pub fn fit_forwarded(query: &[u8], reply: Vec<u8>, transport: Transport) -> Option<Vec<u8>> {
    let limit = match Message::from_vec(query) {
        Ok(request) => size_limit(&request, transport),
        Err(_) => match transport {
            Transport::Tcp => TCP_LIMIT,
            Transport::Udp => CLASSIC_UDP_LIMIT,
        },
    };
    if reply.len() <= limit {
        return Some(reply);
    }
    match Message::from_vec(&reply) {
        Ok(message) => match finish(message, limit) {
            Reply::Send(bytes) => Some(bytes),
            Reply::Forward | Reply::Chase(_) | Reply::Drop => server_failure(query),
        },
        Err(_) => server_failure(query),
    }
}

/// Whether a reply has the TC (truncated) flag set.
pub fn is_truncated(reply: &[u8]) -> bool {
    reply.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

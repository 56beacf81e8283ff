//! The soak's load, each kind on its own thread inside a client pod's namespace: a new TCP
//! connection per request, a new UDP socket per request, A lookups through kube-dns, a few
//! long-lived TCP connections with a request every [`HELD_INTERVAL`], and the intruder's
//! connections that the policy denies while it is in force.
//!
//! Invariants: every wait is bounded ([`REQUEST_TIMEOUT`], [`LOST_AFTER`]); a long-lived
//! connection is lost only when it errs, closes, answers from another backend, or stays
//! silent for [`LOST_AFTER`] (a node restart stalls it; TCP retransmits carry it over); every
//! loop ends when the soak is over.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::record::{Attempt, HeldConnection, Recorder, Traffic, millis};
use crate::netexec::parse_answer;
use crate::probe::{Outcome, Protocol, probe};

/// How long a new connection, a UDP request or a lookup may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A long-lived connection silent this long is lost.
pub const LOST_AFTER: Duration = Duration::from_secs(30);
/// An answer on a long-lived connection slower than this is a stall (counted, not a loss).
pub const STALL_AFTER: Duration = Duration::from_secs(1);
pub const HELD_INTERVAL: Duration = Duration::from_millis(250);
/// How often the intruder tries.
pub const INTRUDER_INTERVAL: Duration = Duration::from_millis(500);

/// Runs `request` every `interval` until the soak is over.
pub fn paced(recorder: &Recorder, interval: Duration, mut request: impl FnMut()) {
    let mut next = Instant::now();
    while !recorder.over() {
        request();
        next += interval;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => next = Instant::now(),
        }
    }
}

/// One new TCP connection with one request: `None` when answered, else how it failed.
pub fn new_tcp(target: SocketAddr) -> Option<&'static str> {
    let report = probe(target, Protocol::Tcp, REQUEST_TIMEOUT, 1);
    match (report.result, report.answered_by) {
        (Outcome::Connected, Some(_)) => None,
        (Outcome::Connected, None) => Some("no-answer"),
        (Outcome::Refused, _) => Some("refused"),
        (Outcome::Timeout, _) => Some("timeout"),
    }
}

/// One UDP request from a new socket (resent every 200 ms until answered or timed out).
pub fn udp(target: SocketAddr) -> Option<&'static str> {
    let report = probe(target, Protocol::Udp, REQUEST_TIMEOUT, 1);
    match (report.result, report.answered_by) {
        (Outcome::Connected, Some(_)) => None,
        (Outcome::Connected, None) => Some("no-answer"),
        (Outcome::Refused, _) => Some("refused"),
        (Outcome::Timeout, _) => Some("timeout"),
    }
}

/// An A lookup of `name` at `server` over UDP (resent after 500 ms), which must answer
/// `expected`.
pub fn lookup(
    server: SocketAddr,
    name: &Name,
    expected: Ipv4Addr,
    id: u16,
) -> Option<&'static str> {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), RecordType::A));
    let Ok(bytes) = query.to_vec() else {
        return Some("encode");
    };
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
        return Some("socket");
    };
    if socket.connect(server).is_err()
        || socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .is_err()
    {
        return Some("socket");
    }
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        if socket.send(&bytes).is_err() {
            return Some("send");
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                let Ok(answer) = Message::from_vec(&buf[..n]) else {
                    return Some("malformed");
                };
                if answer.metadata.id != id {
                    continue;
                }
                if answer.metadata.response_code != ResponseCode::NoError {
                    return Some("rcode");
                }
                let right = answer
                    .answers
                    .iter()
                    .any(|r| matches!(&r.data, RData::A(a) if a.0 == expected));
                return if right { None } else { Some("wrong-answer") };
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Some("refused"),
            Err(_) => return Some("recv"),
        }
    }
    Some("timeout")
}

/// The intruder's connection, bounded as every other client's ([`REQUEST_TIMEOUT`]): `None`
/// when answered, else how it failed. A policy in force shows as a timeout; a shorter bound
/// would count a slow answer on a loaded machine as a denial.
pub fn intrude(target: SocketAddr) -> Option<&'static str> {
    new_tcp(target)
}

/// The intruder's loop: every attempt recorded with its outcome (judged by the verdict).
pub fn intruder(recorder: &Recorder, client: &str, target: SocketAddr) {
    paced(recorder, INTRUDER_INTERVAL, || {
        let at_ms = recorder.now_ms();
        let failure = intrude(target);
        recorder.request(Traffic::Intruder, client, at_ms, None);
        recorder.intruder(Attempt {
            at_ms,
            took_ms: recorder.now_ms().saturating_sub(at_ms),
            connected: failure.is_none(),
            failure,
        });
    });
}

/// One long-lived connection to `target` from the start to the end of the soak.
pub fn held(recorder: &Recorder, client: &str, target: SocketAddr) -> HeldConnection {
    let mut held = HeldConnection {
        client: client.to_owned(),
        backend: None,
        requests: 0,
        stalls: 0,
        longest_wait_ms: 0,
        lost_at_ms: None,
        error: None,
    };
    if let Err(e) = hold(recorder, target, &mut held) {
        let now = recorder.now_ms();
        recorder.request(Traffic::Held, client, now, Some("lost"));
        held.lost_at_ms = Some(now);
        held.error = Some(e.to_string());
    }
    held
}

fn hold(recorder: &Recorder, target: SocketAddr, held: &mut HeldConnection) -> std::io::Result<()> {
    let stream = TcpStream::connect_timeout(&target, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while !recorder.over() {
        let at_ms = recorder.now_ms();
        let sent = Instant::now();
        writer.write_all(b"held\n")?;
        let mut line = String::new();
        loop {
            match reader.read_line(&mut line) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(_) => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if sent.elapsed() >= LOST_AFTER {
                        return Err(std::io::Error::new(
                            ErrorKind::TimedOut,
                            format!("no answer within {LOST_AFTER:?}"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let waited = sent.elapsed();
        held.longest_wait_ms = held.longest_wait_ms.max(millis(waited));
        if waited > STALL_AFTER {
            held.stalls += 1;
        }
        let pod = parse_answer(&line).map(|(pod, _)| pod);
        match (&held.backend, pod) {
            (None, pod) => held.backend = pod,
            (Some(first), Some(pod)) if *first == pod => {}
            (Some(first), other) => {
                return Err(std::io::Error::other(format!(
                    "answered by {other:?}, not {first}"
                )));
            }
        }
        held.requests += 1;
        recorder.request(Traffic::Held, &held.client, at_ms, None);
        std::thread::sleep(HELD_INTERVAL);
    }
    Ok(())
}

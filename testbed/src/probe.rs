//! The client side (like agnhost connect): one TCP connection or one UDP socket to a target,
//! carrying `requests` requests, reporting connected / refused / timeout, which pod answered
//! and the client address it saw.
//!
//! Invariants: every wait is bounded by the timeout; all requests of one probe share one
//! connection (TCP) or one source port (UDP), so `answers` shows whether a flow stays on one
//! backend.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::netexec::parse_answer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
    /// An SCTP INIT over a raw socket, answered by an INIT-ACK (`sctp`).
    Sctp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Connected,
    Refused,
    Timeout,
}

/// What one probe observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub result: Outcome,
    /// The pod that answered the first request.
    pub answered_by: Option<String>,
    /// The client address that pod saw.
    pub client_addr: Option<String>,
    /// The pod that answered each request, in order.
    pub answers: Vec<String>,
    /// Why the probe stopped early, if it did.
    pub error: Option<String>,
}

/// Probes `target`; must run inside the client pod's namespace.
pub fn probe(
    target: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
    requests: usize,
) -> ProbeReport {
    probe_sized(target, protocol, timeout, requests, 0)
}

/// [`probe`] with UDP requests of `datagram` bytes (0: the plain 5-byte request); the server
/// answers a sized request only if every byte arrived (`netexec`).
pub fn probe_sized(
    target: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
    requests: usize,
    datagram: usize,
) -> ProbeReport {
    let (result, replies, error) = match protocol {
        Protocol::Tcp => tcp(target, timeout, requests),
        Protocol::Udp => udp(target, timeout, requests, &udp_request(datagram)),
        Protocol::Sctp => sctp(target, timeout),
    };
    let first = replies.first().and_then(|r| parse_answer(r));
    ProbeReport {
        result,
        answered_by: first.as_ref().map(|(pod, _)| pod.clone()),
        client_addr: first.map(|(_, client)| client),
        answers: replies
            .iter()
            .filter_map(|r| parse_answer(r).map(|(pod, _)| pod))
            .collect(),
        error,
    }
}

type Observed = (Outcome, Vec<String>, Option<String>);

fn tcp(target: SocketAddr, timeout: Duration, requests: usize) -> Observed {
    let stream = match TcpStream::connect_timeout(&target, timeout) {
        Ok(stream) => stream,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return (Outcome::Refused, Vec::new(), None);
        }
        Err(e) => return (Outcome::Timeout, Vec::new(), Some(e.to_string())),
    };
    let mut replies = Vec::new();
    let mut exchange = || -> std::io::Result<()> {
        stream.set_read_timeout(Some(timeout))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream.try_clone()?);
        for _ in 0..requests {
            writer.write_all(b"probe\n")?;
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            replies.push(line.trim().to_owned());
        }
        Ok(())
    };
    let error = exchange().err().map(|e| e.to_string());
    (Outcome::Connected, replies, error)
}

/// The UDP request: `probe`, or for `size` > 5 `probe <size> ` padded with `x` to `size` bytes.
pub fn udp_request(size: usize) -> Vec<u8> {
    if size <= b"probe".len() {
        return b"probe".to_vec();
    }
    let mut request = format!("probe {size} ").into_bytes();
    request.resize(size.max(request.len()), b'x');
    request
}

fn udp(target: SocketAddr, timeout: Duration, requests: usize, request: &[u8]) -> Observed {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = match UdpSocket::bind(local)
        .and_then(|s| s.connect(target).map(|()| s))
        .and_then(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .map(|()| s)
        }) {
        Ok(socket) => socket,
        Err(e) => return (Outcome::Timeout, Vec::new(), Some(e.to_string())),
    };
    let mut replies = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..requests {
        let deadline = Instant::now() + timeout;
        let reply = loop {
            if Instant::now() >= deadline {
                break None;
            }
            if let Err(e) = socket.send(request) {
                return udp_error(e, replies);
            }
            match socket.recv(&mut buf) {
                Ok(n) => break Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return udp_error(e, replies),
            }
        };
        match reply {
            Some(text) => replies.push(text),
            None if replies.is_empty() => return (Outcome::Timeout, replies, None),
            None => return (Outcome::Connected, replies, Some("no reply".to_owned())),
        }
    }
    (Outcome::Connected, replies, None)
}

fn sctp(target: SocketAddr, timeout: Duration) -> Observed {
    let SocketAddr::V4(target) = target else {
        return (Outcome::Timeout, Vec::new(), Some("IPv4 only".to_owned()));
    };
    match crate::sctp::probe(target, timeout) {
        Ok(Some(text)) => (Outcome::Connected, vec![text], None),
        Ok(None) => (Outcome::Timeout, Vec::new(), None),
        Err(e) => (Outcome::Timeout, Vec::new(), Some(e.to_string())),
    }
}

fn udp_error(e: std::io::Error, replies: Vec<String>) -> Observed {
    let outcome = if !replies.is_empty() {
        Outcome::Connected
    } else if e.kind() == ErrorKind::ConnectionRefused {
        Outcome::Refused
    } else {
        Outcome::Timeout
    };
    (outcome, replies, Some(e.to_string()))
}

//! The pods' built-in server (like agnhost netexec): on every declared port, TCP and UDP, it
//! answers each request line (TCP) or datagram (UDP) with `<pod name> <client ip:port>`, and
//! each SCTP INIT with an INIT-ACK carrying that answer (`sctp`, over a raw socket). A sized UDP
//! request is answered only if it arrived whole.
//!
//! Invariants: it prints `ready` only once every port is bound for both protocols; one slow or
//! broken client never stops the others (a thread per TCP connection). It listens on both IP
//! families (`[::]`, falling back to `0.0.0.0` where IPv6 is off); an IPv4 client is reported
//! in IPv4 form (`10.244.1.2:41234`), never as a mapped IPv6 address.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};

use crate::error::{Error, Result, context};

/// The answer to one request: the pod's name and the client address it saw.
pub fn answer(pod: &str, client: SocketAddr) -> String {
    let client = match client {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => client,
        },
        v4 => v4,
    };
    format!("{pod} {client}")
}

/// Splits an [`answer`] into the pod name and the client address.
pub fn parse_answer(text: &str) -> Option<(String, String)> {
    let (pod, client) = text.trim().split_once(' ')?;
    Some((pod.to_owned(), client.to_owned()))
}

/// Binds every port (TCP and UDP), prints `ready`, and serves until killed.
pub fn serve(pod: &str, ports: &[u16]) -> Result<()> {
    if ports.is_empty() {
        return Err(Error("netexec needs at least one port".to_owned()));
    }
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for &port in ports {
        // `[::]` takes both families (IPv4 as mapped addresses); without IPv6, IPv4 alone.
        let both = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let listener = TcpListener::bind(both).or_else(|_| TcpListener::bind(v4));
        tcp.push(listener.map_err(context(format!("TCP port {port}")))?);
        let socket = UdpSocket::bind(both).or_else(|_| UdpSocket::bind(v4));
        udp.push(socket.map_err(context(format!("UDP port {port}")))?);
    }
    println!("ready");
    std::thread::scope(|scope| {
        scope.spawn(|| crate::sctp::respond(pod, ports));
        for listener in &tcp {
            scope.spawn(move || serve_tcp(pod, listener));
        }
        for socket in &udp {
            scope.spawn(move || serve_udp(pod, socket));
        }
    });
    Ok(())
}

fn serve_tcp(pod: &str, listener: &TcpListener) {
    for stream in listener.incoming().flatten() {
        let pod = pod.to_owned();
        std::thread::spawn(move || answer_connection(&pod, stream));
    }
}

fn answer_connection(pod: &str, stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        if line.is_err() || writeln!(writer, "{}", answer(pod, peer)).is_err() {
            return;
        }
    }
}

fn serve_udp(pod: &str, socket: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if !whole(&buf[..n]) {
                continue;
            }
            // A lost reply is the client's to retry, as with any UDP service.
            let _ = socket.send_to(answer(pod, peer).as_bytes(), peer);
        }
    }
}

/// A sized request (`probe <N> ` padded to N bytes, `probe::udp_request`) is answered only if
/// all N bytes arrived: a datagram larger than the MTU proves it was reassembled whole.
fn whole(datagram: &[u8]) -> bool {
    let Some(rest) = datagram.strip_prefix(b"probe ") else {
        return true;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
        .is_none_or(|size| size == datagram.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let client: SocketAddr = "10.244.0.2:41234".parse().unwrap();
        assert_eq!(answer("store-be-1", client), "store-be-1 10.244.0.2:41234");
        assert_eq!(
            parse_answer("store-be-1 10.244.0.2:41234\n"),
            Some(("store-be-1".to_owned(), "10.244.0.2:41234".to_owned()))
        );
        assert_eq!(parse_answer("garbage"), None);
        let mapped: SocketAddr = "[::ffff:10.244.0.2]:41234".parse().unwrap();
        assert_eq!(answer("p", mapped), "p 10.244.0.2:41234");
        let v6: SocketAddr = "[fd00:10:244:1::2]:41234".parse().unwrap();
        assert_eq!(answer("p", v6), "p [fd00:10:244:1::2]:41234");
    }

    #[test]
    fn a_sized_request_is_whole_only_with_every_byte() {
        let request = crate::probe::udp_request(3000);
        assert_eq!(request.len(), 3000);
        assert!(whole(&request));
        assert!(
            !whole(&request[..1500]),
            "a fragment's worth is not the datagram"
        );
        assert!(whole(b"probe"));
    }
}

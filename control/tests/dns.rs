//! `ferroplane dns` end to end: the real binary serving a temporary state directory on
//! 127.0.0.1, queried over UDP and TCP with hickory-proto messages (no root needed). Objects
//! go in through `ferroplane apply`, so the Endpoints and EndpointSlices are the controllers'.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

// The recorded API server of the `--source kubernetes` tests; this file uses part of it.
#[allow(dead_code)]
#[path = "kube_source/server.rs"]
mod recorded_api;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

const BIN: &str = env!("CARGO_BIN_EXE_ferroplane");
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// A state directory and a `ferroplane dns` serving it, killed on drop.
struct Dns {
    dir: tempfile::TempDir,
    child: Option<Child>,
    addr: SocketAddr,
}

impl Dns {
    /// A state directory with `manifest` applied (nothing served yet).
    fn with(manifest: &str) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let dns = Dns {
            dir,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        if !manifest.is_empty() {
            dns.apply(manifest);
        }
        dns
    }

    fn apply(&self, manifest: &str) {
        let mut child = Command::new(BIN)
            .arg("--state")
            .arg(self.dir.path())
            .args(["apply", "-f", "-", "-o", "name"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server on a free port with `extra` flags; returns the start line.
    fn serve(&mut self, extra: &[&str]) -> String {
        let mut child = Command::new(BIN)
            .arg("--state")
            .arg(self.dir.path())
            .args(["dns", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        self.child = Some(child);
        let (lines, received) = mpsc::channel();
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let line = received.recv_timeout(Duration::from_secs(20)).unwrap();
        let addr = line
            .split(" on ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        self.addr = addr.parse().unwrap();
        line
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn query(id: u16, qname: &str, qtype: RecordType, payload: Option<u16>) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message
}

fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    socket.send_to(bytes, addr).unwrap();
    let mut buffer = [0u8; 65535];
    let length = socket.recv(&mut buffer).unwrap();
    buffer[..length].to_vec()
}

fn udp(addr: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    let bytes = query(0x4242, qname, qtype, None).to_vec().unwrap();
    let reply = Message::from_vec(&udp_exchange(addr, &bytes)).unwrap();
    assert_eq!(reply.metadata.id, 0x4242);
    reply
}

fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut reply).unwrap();
    reply
}

fn tcp(addr: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let bytes = query(0x5151, qname, qtype, None).to_vec().unwrap();
    Message::from_vec(&tcp_exchange(&mut stream, &bytes)).unwrap()
}

/// The answer records in presentation form, sorted.
fn rendered(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

fn pod(name: &str, labels: &str, ip: &str, ready: bool, host: Option<(&str, &str)>) -> String {
    let host = host
        .map(|(hostname, subdomain)| format!("  hostname: {hostname}\n  subdomain: {subdomain}\n"))
        .unwrap_or_default();
    let ready = if ready { "True" } else { "False" };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {labels}\nspec:\n{host}  containers:\n  - name: app\nstatus:\n  podIP: {ip}\n  phase: Running\n  conditions:\n  - type: Ready\n    status: \"{ready}\"\n---\n"
    )
}

const SERVICES: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.0.50
  selector:
    app: web
  ports:
  - name: http
    port: 80
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector:
    app: db
  ports:
  - name: pg
    port: 5432
---
apiVersion: v1
kind: Service
metadata:
  name: peers
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app: db
  ports:
  - name: pg
    port: 5432
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: www.example.com
---
";

fn cluster() -> Dns {
    let pods = [
        pod("web-1", "web", "10.244.0.10", true, None),
        pod("db-0", "db", "10.244.1.5", true, Some(("db-0", "db"))),
        pod("db-1", "db", "10.244.1.6", true, None),
        pod("db-2", "db", "10.244.1.7", false, Some(("db-2", "db"))),
    ]
    .concat();
    let mut dns = Dns::with(&(SERVICES.to_owned() + &pods));
    let line = dns.serve(&[]);
    assert!(
        line.starts_with("serving cluster.local on 127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.contains("(udp, tcp)") && line.ends_with(" records"),
        "{line}"
    );
    dns
}

#[test]
fn serves_every_record_kind_of_the_specification() {
    let dns = cluster();
    let addr = dns.addr;
    let a = udp(addr, "web.default.svc.cluster.local.", RecordType::A);
    assert!(a.metadata.authoritative);
    assert_eq!(
        rendered(&a.answers),
        ["web.default.svc.cluster.local. 5 IN A 10.96.0.50"]
    );
    assert_eq!(
        rendered(
            &udp(
                addr,
                "_dns._udp.web.default.svc.cluster.local.",
                RecordType::SRV
            )
            .answers
        ),
        [
            "_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        rendered(&udp(addr, "50.0.96.10.in-addr.arpa.", RecordType::PTR).answers),
        ["50.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]
    );
    // Headless: ready endpoints only; db-1 has no hostname, so its address names it.
    assert_eq!(
        rendered(&udp(addr, "db.default.svc.cluster.local.", RecordType::A).answers),
        [
            "db.default.svc.cluster.local. 5 IN A 10.244.1.5",
            "db.default.svc.cluster.local. 5 IN A 10.244.1.6"
        ]
    );
    assert_eq!(
        rendered(
            &udp(
                addr,
                "_pg._tcp.db.default.svc.cluster.local.",
                RecordType::SRV
            )
            .answers
        ),
        [
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 10-244-1-6.db.default.svc.cluster.local.",
            "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 db-0.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        rendered(&udp(addr, "db-0.db.default.svc.cluster.local.", RecordType::A).answers),
        ["db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5"]
    );
    // db-0 backs two headless Services: one PTR for each name; its subdomain names only db.
    assert_eq!(
        rendered(&udp(addr, "5.1.244.10.in-addr.arpa.", RecordType::PTR).answers),
        [
            "5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.peers.default.svc.cluster.local.",
            "5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."
        ]
    );
    // publishNotReadyAddresses: the unready db-2 too.
    assert_eq!(
        udp(addr, "peers.default.svc.cluster.local.", RecordType::A)
            .answers
            .len(),
        3
    );
    assert_eq!(
        udp(addr, "db-2.db.default.svc.cluster.local.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        rendered(&udp(addr, "ext.default.svc.cluster.local.", RecordType::A).answers),
        ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    );
    assert_eq!(
        rendered(&udp(addr, "dns-version.cluster.local.", RecordType::TXT).answers),
        ["dns-version.cluster.local. 5 IN TXT 1.1.0"]
    );
    assert_eq!(
        rendered(
            &udp(
                addr,
                "10-244-0-10.default.pod.cluster.local.",
                RecordType::A
            )
            .answers
        ),
        ["10-244-0-10.default.pod.cluster.local. 5 IN A 10.244.0.10"]
    );
    let missing = udp(addr, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities.len(), 1);
    assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(missing.authorities[0].name.to_ascii(), "cluster.local.");
    let nodata = udp(addr, "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(
        (nodata.metadata.response_code, nodata.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    // Case-insensitive, over TCP as well.
    let over_tcp = tcp(addr, "WEB.default.SVC.Cluster.Local.", RecordType::A);
    assert_eq!(
        rendered(&over_tcp.answers),
        ["WEB.default.SVC.Cluster.Local. 5 IN A 10.96.0.50"]
    );
    assert_eq!(
        udp(addr, "example.com.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
}

#[test]
fn a_large_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: big\nspec:\n  clusterIP: None\n  selector:\n    app: big\n  ports:\n  - port: 80\n---\n";
    let pods: String = (0..120)
        .map(|i| {
            pod(
                &format!("big-{i}"),
                "big",
                &format!("10.244.7.{}", i + 1),
                true,
                None,
            )
        })
        .collect();
    let mut dns = Dns::with(&(service.to_owned() + &pods));
    dns.serve(&[]);
    let qname = "big.default.svc.cluster.local.";
    for payload in [None, Some(1232), Some(4096)] {
        let bytes = query(9, qname, RecordType::A, payload).to_vec().unwrap();
        let reply = udp_exchange(dns.addr, &bytes);
        assert!(
            reply.len() <= usize::from(payload.unwrap_or(512)),
            "{payload:?}"
        );
        let reply = Message::from_vec(&reply).unwrap();
        assert!(reply.metadata.truncation, "{payload:?}");
        assert_eq!(reply.edns.is_some(), payload.is_some());
    }
    let whole = tcp(dns.addr, qname, RecordType::A);
    assert!(!whole.metadata.truncation);
    let mut addresses: Vec<Ipv4Addr> = whole
        .answers
        .iter()
        .map(|r| match r.data {
            RData::A(A(ip)) => ip,
            _ => panic!("{r}"),
        })
        .collect();
    addresses.sort();
    let expected: Vec<Ipv4Addr> = (1..=120).map(|i| Ipv4Addr::new(10, 244, 7, i)).collect();
    assert_eq!(addresses, expected);
}

/// Polls `qname` until `done` holds for the reply; the time it took.
fn time_until(addr: SocketAddr, qname: &str, done: impl Fn(&Message) -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if done(&udp(addr, qname, RecordType::A)) {
            return started.elapsed();
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("{qname} did not change within 5 s");
}

#[test]
fn a_service_change_shows_within_a_second() {
    let mut dns = Dns::with("");
    dns.serve(&[]);
    let qname = "late.default.svc.cluster.local.";
    assert_eq!(
        udp(dns.addr, qname, RecordType::A).metadata.response_code,
        ResponseCode::NXDomain
    );
    dns.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: late\nspec:\n  clusterIP: 10.96.0.77\n  ports:\n  - port: 80\n");
    let added = time_until(dns.addr, qname, |m| {
        rendered(&m.answers) == ["late.default.svc.cluster.local. 5 IN A 10.96.0.77"]
    });
    assert!(added < Duration::from_secs(1), "{added:?}");
    let mut delete = Command::new(BIN);
    delete
        .arg("--state")
        .arg(dns.dir.path())
        .args(["delete", "svc", "late"]);
    assert!(delete.output().unwrap().status.success());
    let removed = time_until(dns.addr, qname, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    });
    assert!(removed < Duration::from_secs(1), "{removed:?}");
}

#[test]
fn malformed_queries_get_formerr_and_the_server_keeps_answering() {
    let dns = cluster();
    let garbage: [&[u8]; 4] = [
        &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'x'],
        &[
            0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
        ],
        &[
            0xab, 0xcd, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
        ],
        &[
            0xab, 0xcd, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 0,
        ],
    ];
    for bytes in garbage {
        let reply = Message::from_vec(&udp_exchange(dns.addr, bytes)).unwrap();
        assert_eq!(reply.metadata.id, 0xabcd, "{bytes:?}");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::FormErr,
            "{bytes:?}"
        );
    }
    // Too short for a header: silently dropped. Then over TCP, one bad message among good ones.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&[1, 2, 3], dns.addr).unwrap();
    let mut stream = TcpStream::connect(dns.addr).unwrap();
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let formerr = Message::from_vec(&tcp_exchange(&mut stream, garbage[0])).unwrap();
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    let good = query(3, "web.default.svc.cluster.local.", RecordType::A, None);
    let reply = Message::from_vec(&tcp_exchange(&mut stream, &good.to_vec().unwrap())).unwrap();
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(
        udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A)
            .answers
            .len(),
        1
    );
}

#[test]
fn glibc_style_parallel_a_and_aaaa_are_both_answered_every_time() {
    let dns = cluster();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket.connect(dns.addr).unwrap();
    let mut slowest = Duration::ZERO;
    let mut buffer = [0u8; 4096];
    for round in 0..1000u16 {
        let ids = [round.wrapping_mul(2), round.wrapping_mul(2) + 1];
        let started = Instant::now();
        for (id, qtype) in ids.into_iter().zip([RecordType::A, RecordType::AAAA]) {
            let bytes = query(id, "web.default.svc.cluster.local.", qtype, None)
                .to_vec()
                .unwrap();
            socket.send(&bytes).unwrap();
        }
        let mut answered = Vec::new();
        while answered.len() < 2 {
            let length = socket
                .recv(&mut buffer)
                .unwrap_or_else(|e| panic!("round {round}: {e} after {answered:?}"));
            let reply = Message::from_vec(&buffer[..length]).unwrap();
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            answered.push(reply.metadata.id);
        }
        answered.sort();
        assert_eq!(answered, ids, "round {round}");
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}

/// A stand-in upstream resolver: answers every A query with 192.0.2.1, or nothing when mute.
fn upstream(mute: bool) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok((length, peer)) = socket.recv_from(&mut buffer) {
            let Ok(request) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            if mute {
                continue;
            }
            let mut reply = Message::response(request.metadata.id, OpCode::Query);
            reply.queries = request.queries.clone();
            let owner = request.queries[0].name().clone();
            reply.add_answer(Record::from_rdata(
                owner,
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
        }
    });
    addr
}

#[test]
fn names_outside_the_zone_go_to_the_upstream() {
    let mut dns = Dns::with(SERVICES);
    let upstream = upstream(false).to_string();
    dns.serve(&["--upstream", &upstream]);
    let outside = udp(dns.addr, "www.example.com.", RecordType::A);
    assert_eq!(
        rendered(&outside.answers),
        ["www.example.com. 60 IN A 192.0.2.1"]
    );
    let over_tcp = tcp(dns.addr, "www.example.com.", RecordType::A);
    assert_eq!(over_tcp.metadata.id, 0x5151);
    assert_eq!(
        rendered(&over_tcp.answers),
        ["www.example.com. 60 IN A 192.0.2.1"]
    );
    // An ExternalName is completed with the upstream's records of its target.
    assert_eq!(
        rendered(&udp(dns.addr, "ext.default.svc.cluster.local.", RecordType::A).answers),
        [
            "ext.default.svc.cluster.local. 5 IN CNAME www.example.com.",
            "www.example.com. 60 IN A 192.0.2.1"
        ]
    );
    // The zone is still answered here.
    let inside = udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A);
    assert!(inside.metadata.authoritative && inside.metadata.recursion_available);
}

#[test]
fn a_silent_upstream_gives_servfail_after_the_timeout() {
    let mut dns = Dns::with(SERVICES);
    let upstream = upstream(true).to_string();
    dns.serve(&["--upstream", &upstream]);
    let started = Instant::now();
    let reply = udp(dns.addr, "www.example.com.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    // An ExternalName still gets its CNAME.
    let alias = udp(dns.addr, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(alias.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        rendered(&alias.answers),
        ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    );
}

#[test]
fn serves_a_kubernetes_api_server_and_follows_its_watch() {
    let recorded = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recorded");
    let api = recorded_api::RecordedApi::start(&recorded);
    let mut dns = Dns::with("");
    let kubeconfig = dns.dir.path().join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: recorded\n  cluster:\n    server: {}\nusers:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: recorded\n  context:\n    cluster: recorded\n    user: nobody\ncurrent-context: recorded\n",
        api.url()
    );
    std::fs::write(&kubeconfig, config).unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let args = [
        "--source",
        "kubernetes",
        "--kubeconfig",
        &kubeconfig,
        "--zone",
        "k8s.test",
    ];
    let line = dns.serve(&args);
    assert!(line.starts_with("serving k8s.test on "), "{line}");
    // The recorded services.json: store-be 10.9.3.76 with port http/80.
    assert_eq!(
        rendered(&udp(dns.addr, "store-be.default.svc.k8s.test.", RecordType::A).answers),
        ["store-be.default.svc.k8s.test. 5 IN A 10.9.3.76"]
    );
    assert_eq!(
        rendered(
            &udp(
                dns.addr,
                "_https._tcp.kubernetes.default.svc.k8s.test.",
                RecordType::SRV
            )
            .answers
        ),
        [
            "_https._tcp.kubernetes.default.svc.k8s.test. 5 IN SRV 0 100 443 kubernetes.default.svc.k8s.test."
        ]
    );
    // A watch event adds store-fe (10.9.7.20).
    let added: serde_json::Value = serde_json::from_slice(
        &std::fs::read(recorded.join("watch/service-store-fe-added.json")).unwrap(),
    )
    .unwrap();
    api.wait_for_watches(recorded_api::SERVICES, 1);
    api.push_event(recorded_api::SERVICES, &added);
    let took = time_until(dns.addr, "store-fe.default.svc.k8s.test.", |m| {
        rendered(&m.answers) == ["store-fe.default.svc.k8s.test. 5 IN A 10.9.7.20"]
    });
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A state directory with a headless Service `big` of 120 endpoints (an answer of ~2 KB).
fn big_cluster() -> Dns {
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: big\nspec:\n  clusterIP: None\n  selector:\n    app: big\n  ports:\n  - port: 80\n---\n";
    let pods: String = (0..120)
        .map(|i| {
            let ip = format!("10.244.7.{}", i + 1);
            pod(&format!("big-{i}"), "big", &ip, true, None)
        })
        .collect();
    Dns::with(&(SERVICES.to_owned() + service + &pods))
}

/// A TCP connection to `server` from the loopback address `source` (so that each test
/// client counts as a client of its own), with a receive buffer of `receive_buffer` bytes.
fn connect_from(
    runtime: &tokio::runtime::Runtime,
    source: Ipv4Addr,
    server: SocketAddr,
    receive_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.connect(server).await?.into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the server closed `stream` (EOF or reset), without waiting and without reading
/// past what a silent client would have received (nothing).
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// One UDP and one TCP lookup of a zone name from 127.0.0.1, each answered within 1 s.
fn lookups_answer_within_a_second(addr: SocketAddr, when: &str) {
    let qname = "web.default.svc.cluster.local.";
    let started = Instant::now();
    assert_eq!(
        rendered(&udp(addr, qname, RecordType::A).answers),
        [format!("{qname} 5 IN A 10.96.0.50")],
        "{when}"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "{when}: udp");
    let started = Instant::now();
    let reply = tcp(addr, qname, RecordType::A);
    assert_eq!(reply.answers.len(), 1, "{when}");
    assert!(started.elapsed() < Duration::from_secs(1), "{when}: tcp");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

#[test]
fn six_hundred_tcp_connections_leave_udp_and_tcp_lookups_answering() {
    let mut dns = Dns::with(SERVICES);
    dns.serve(&[]);
    let addr = dns.addr;
    let runtime = runtime();
    // 600 silent connections from one client: its share (64) is served, the rest refused.
    let one_client: Vec<TcpStream> = (0..600)
        .map(|_| connect_from(&runtime, Ipv4Addr::new(127, 0, 0, 2), addr, None).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(300));
    let refused = one_client.iter().filter(|s| closed_by_server(s)).count();
    assert_eq!(refused, 600 - 64);
    lookups_answer_within_a_second(addr, "one client holding its 64 connections");
    // 600 more from ten clients: the server's cap (512) is reached, and each new connection
    // closes the one that waited longest for a query, so a real lookup still gets in.
    let many_clients: Vec<TcpStream> = (0..600u32)
        .map(|i| {
            let source = Ipv4Addr::new(127, 0, 0, u8::try_from(3 + i % 10).unwrap());
            connect_from(&runtime, source, addr, None).unwrap()
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let open = one_client
        .iter()
        .chain(&many_clients)
        .filter(|s| !closed_by_server(s))
        .count();
    assert_eq!(open, 512);
    assert!(
        one_client.iter().all(closed_by_server),
        "the oldest go first"
    );
    lookups_answer_within_a_second(addr, "at the cap of 512 silent connections");
}

#[test]
fn silent_and_non_reading_tcp_clients_are_closed_after_their_timeouts() {
    let mut dns = big_cluster();
    dns.serve(&["--tcp-idle-timeout", "1s", "--tcp-write-timeout", "2s"]);
    let addr = dns.addr;
    let runtime = runtime();
    // Silent connections are closed after the idle timeout, not before.
    let connected = Instant::now();
    let silent: Vec<TcpStream> = (0..10)
        .map(|_| connect_from(&runtime, Ipv4Addr::new(127, 0, 0, 2), addr, None).unwrap())
        .collect();
    while !silent.iter().all(closed_by_server) {
        assert!(
            connected.elapsed() < Duration::from_secs(5),
            "idle connections left open"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        connected.elapsed() >= Duration::from_secs(1),
        "{:?}",
        connected.elapsed()
    );
    // A client that sends queries and never reads the answers is reset after the write
    // timeout, while the others are answered.
    let non_reader =
        connect_from(&runtime, Ipv4Addr::new(127, 0, 0, 20), addr, Some(4096)).unwrap();
    let mut writer = non_reader.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let pipelined: Vec<u8> = (0..6000u16)
        .flat_map(|id| {
            let bytes = query(id, "big.default.svc.cluster.local.", RecordType::A, None)
                .to_vec()
                .unwrap();
            let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            framed
        })
        .collect();
    let sending = thread::spawn(move || {
        let _ = writer.write_all(&pipelined);
    });
    let started = Instant::now();
    let reset = loop {
        if let Ok(Some(error)) = non_reader.take_error() {
            break error;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a client that does not read was not closed within 15 s"
        );
        lookups_answer_within_a_second(addr, "while a client does not read");
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset, "{reset}");
    sending.join().unwrap();
    lookups_answer_within_a_second(addr, "after");
}

/// A stand-in upstream on UDP and TCP (same port): names starting with `slow` are answered
/// after `delay`; `big.example.` gets 100 A records over TCP, and over UDP as well unless
/// `truncate_udp`, when a UDP answer over 512 bytes comes back as its header with TC set.
fn slow_upstream(delay: Duration, truncate_udp: bool) -> SocketAddr {
    let (udp_socket, tcp_listener) = loop {
        let udp_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(udp_socket.local_addr().unwrap()) {
            break (udp_socket, tcp);
        }
    };
    let addr = udp_socket.local_addr().unwrap();
    let answer = move |bytes: &[u8], over_udp: bool| -> Option<Vec<u8>> {
        let request = Message::from_vec(bytes).ok()?;
        let owner = request.queries[0].name().clone();
        let mut reply = Message::response(request.metadata.id, OpCode::Query);
        reply.queries = request.queries.clone();
        let count = if owner.to_ascii() == "big.example." {
            100
        } else {
            1
        };
        for i in 0..count {
            let rdata = RData::A(A::new(192, 0, 2, u8::try_from(i + 1).unwrap()));
            reply.add_answer(Record::from_rdata(owner.clone(), 60, rdata));
        }
        let bytes = reply.to_vec().ok()?;
        if over_udp && truncate_udp && bytes.len() > 512 {
            return reply.truncate().to_vec().ok();
        }
        Some(bytes)
    };
    let udp_socket = std::sync::Arc::new(udp_socket);
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok((length, peer)) = udp_socket.recv_from(&mut buffer) {
            let bytes = buffer[..length].to_vec();
            let slow = Message::from_vec(&bytes)
                .is_ok_and(|m| m.queries[0].name().to_ascii().starts_with("slow"));
            let socket = std::sync::Arc::clone(&udp_socket);
            let reply = move || {
                if let Some(reply) = answer(&bytes, true) {
                    let _ = socket.send_to(&reply, peer);
                }
            };
            if slow {
                thread::spawn(move || {
                    thread::sleep(delay);
                    reply();
                });
            } else {
                reply();
            }
        }
    });
    thread::spawn(move || {
        for stream in tcp_listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut prefix = [0u8; 2];
            if stream.read_exact(&mut prefix).is_err() {
                continue;
            }
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            if stream.read_exact(&mut request).is_err() {
                continue;
            }
            if let Some(reply) = answer(&request, false) {
                let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                let _ = stream.write_all(&framed);
            }
        }
    });
    addr
}

#[test]
fn slow_upstream_names_of_one_client_leave_other_clients_and_the_zone_answering() {
    let mut dns = Dns::with(SERVICES);
    let upstream = slow_upstream(Duration::from_millis(1500), false).to_string();
    dns.serve(&["--upstream", &upstream]);
    // One client floods slow names: more than every forward permit of the server (256).
    let flooder = UdpSocket::bind("127.0.0.2:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let replies = flooder.try_clone().unwrap();
    let counting = thread::spawn(move || {
        let (mut answered, mut failed) = (0, 0);
        let mut buffer = [0u8; 4096];
        while let Ok(length) = replies.recv(&mut buffer) {
            match Message::from_vec(&buffer[..length])
                .unwrap()
                .metadata
                .response_code
            {
                ResponseCode::ServFail => failed += 1,
                ResponseCode::NoError => answered += 1,
                other => panic!("{other:?}"),
            }
            if failed + answered == 300 {
                break;
            }
        }
        (answered, failed)
    });
    for id in 0..300u16 {
        if id % 10 == 0 {
            // Paced a little, so the burst is not lost in the sockets' buffers.
            thread::sleep(Duration::from_millis(1));
        }
        let bytes = query(id, &format!("slow-{id}.example."), RecordType::A, None)
            .to_vec()
            .unwrap();
        flooder.send_to(&bytes, dns.addr).unwrap();
    }
    thread::sleep(Duration::from_millis(100));
    // Another client's forward is answered by the upstream, not refused for want of permits,
    // and names of the zone answer at once.
    let started = Instant::now();
    let outside = udp(dns.addr, "fast.example.", RecordType::A);
    assert_eq!(outside.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        rendered(&outside.answers),
        ["fast.example. 60 IN A 192.0.2.1"]
    );
    lookups_answer_within_a_second(dns.addr, "while slow names are forwarded");
    assert!(started.elapsed() < Duration::from_secs(1));
    // Over one TCP connection, a zone name asked after a slow one is answered first.
    let mut stream = TcpStream::connect(dns.addr).unwrap();
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    for (id, qname) in [
        (1, "slow-tcp.example."),
        (2, "web.default.svc.cluster.local."),
    ] {
        let bytes = query(id, qname, RecordType::A, None).to_vec().unwrap();
        let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).unwrap();
    }
    let started = Instant::now();
    let read_reply = |stream: &mut TcpStream| {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).unwrap();
        Message::from_vec(&reply).unwrap()
    };
    let first = read_reply(&mut stream);
    assert_eq!(first.metadata.id, 2);
    assert!(started.elapsed() < Duration::from_secs(1));
    let second = read_reply(&mut stream);
    assert_eq!(second.metadata.id, 1);
    assert_eq!(
        rendered(&second.answers),
        ["slow-tcp.example. 60 IN A 192.0.2.1"]
    );
    // The flooder got its share (32) forwarded and SERVFAIL at once for the rest.
    assert_eq!(counting.join().unwrap(), (32, 300 - 32));
}

#[test]
fn forwarded_answers_fit_the_client_like_local_ones() {
    // An upstream that ignores the client's size: the server truncates for the UDP client.
    let mut dns = Dns::with(SERVICES);
    let upstream = slow_upstream(Duration::ZERO, false).to_string();
    dns.serve(&["--upstream", &upstream]);
    for payload in [None, Some(1232)] {
        let bytes = query(7, "big.example.", RecordType::A, payload)
            .to_vec()
            .unwrap();
        let reply = udp_exchange(dns.addr, &bytes);
        assert!(
            reply.len() <= usize::from(payload.unwrap_or(512)),
            "{payload:?}"
        );
        let reply = Message::from_vec(&reply).unwrap();
        assert!(reply.metadata.truncation, "{payload:?}");
        assert_eq!(reply.metadata.id, 7);
    }
    // An upstream that truncates over UDP: a TCP client gets the whole answer, asked over TCP.
    let mut dns = Dns::with(SERVICES);
    let upstream = slow_upstream(Duration::ZERO, true).to_string();
    dns.serve(&["--upstream", &upstream]);
    let whole = tcp(dns.addr, "big.example.", RecordType::A);
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 100);
}

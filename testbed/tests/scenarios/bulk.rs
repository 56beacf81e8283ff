//! Scenario `bulk` (issue 11, "correct bytes, not only fast ones"): random bytes move pod ->
//! ClusterIP -> pod on the other node, and SHA-256 (`sha256sum`) of what left the sender
//! equals that of what reached the receiver. In VXLAN mode and in routed mode, 1 GiB each,
//! through a NetworkPolicy that isolates the sink and allows the clients (a pod without the
//! client label is kept out while the sink listens). In VXLAN mode also a pod on the sink's
//! own node, and (a cluster of its own) the internet host 203.0.113.10 through the cloud LB
//! to a LoadBalancer Service with externalTrafficPolicy Cluster and Local: 128 MiB each, to
//! keep the scenario within a few minutes per pod backend on CI's two cores (the scenarios
//! run ferroplane's debug build: ~0.3 Gbit/s with TAP pods on a loaded machine). For each
//! transfer a capture (`tcpdump -vv`, the first [`CAPTURED`] packets coming in to the
//! receiving pod) must show no bad IP or TCP checksum (a partial one, offloaded to the pod's
//! kernel, must be exactly its pseudo-header sum) and some verified ones, and the
//! scenario prints the throughput and the sender namespace's TCP retransmits (`RetransSegs`
//! of its `/proc/net/snmp`).
//!
//! Invariants: every transfer is bounded in time (a [`STALL`] without progress, or slower
//! than [`FLOOR_GBIT_S`] overall, fails with the bytes moved so far); the data is a
//! xorshift stream seeded from `/dev/urandom` (the seed is printed), hashed at both ends by
//! `sha256sum`, independently of the code under test; the capture process is killed when
//! the transfer ends, whatever its outcome.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use testbed::netns;

use crate::cluster::{Cluster, DEMO, MANIFESTS};

const MIB: u64 = 1 << 20;
/// The cross-node transfers of the issue.
const CROSS_NODE: u64 = 1024 * MIB;
/// The other cases (same node, through the cloud LB): smaller, for CI's time.
const OTHERS: u64 = 128 * MIB;
const PORT: u16 = 5201;
/// No byte moving for this long fails the transfer.
const STALL: Duration = Duration::from_secs(20);
/// The slowest whole-transfer rate accepted (a bound in time, not a speed test: today's
/// slowest backend moves ~0.3 Gbit/s).
const FLOOR_GBIT_S: f64 = 0.04;
/// How long a client may take to connect (the cloud LB programs its routes once the health
/// checks pass).
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// Inbound packets the receiving pod's capture verifies.
const CAPTURED: usize = 2000;
const CHUNK: usize = 256 * 1024;

/// `sha256sum` reading from a pipe.
struct Sha256Sum {
    child: Child,
    stdin: ChildStdin,
}

impl Sha256Sum {
    fn start() -> Sha256Sum {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting sha256sum (coreutils)");
        let stdin = child.stdin.take().unwrap();
        Sha256Sum { child, stdin }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("writing to sha256sum");
    }

    fn finish(self) -> String {
        drop(self.stdin);
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "sha256sum failed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The random bytes: xorshift64* from a seed.
struct Generator(u64);

impl Generator {
    fn seeded() -> (Generator, u64) {
        let mut seed = [0u8; 8];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .expect("reading /dev/urandom");
        let seed = u64::from_ne_bytes(seed) | 1;
        (Generator(seed), seed)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_ne_bytes();
            word.copy_from_slice(&value[..word.len()]);
        }
    }
}

/// `RetransSegs` of the TCP stack of namespace `ns`.
fn retransmits(ns: &str) -> u64 {
    let snmp = netns::within(ns, || {
        Ok(std::fs::read_to_string("/proc/thread-self/net/snmp")?)
    })
    .unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "RetransSegs")
        .expect("no RetransSegs in /proc/net/snmp");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// `tcpdump -vv` of the packets coming in to a pod on the bulk port, to a file.
struct Capture {
    child: Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Capture {
    fn start(ns: &str, case: &str) -> Capture {
        let dir = std::env::temp_dir();
        let stem = format!("fp-bulk-{}-{case}", std::process::id()).replace(' ', "-");
        let (out, err) = (
            dir.join(format!("{stem}.txt")),
            dir.join(format!("{stem}.err")),
        );
        let count = CAPTURED.to_string();
        let port = PORT.to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", "eth0", "-n", "-l"])
            .args(["-vv", "-Q", "in", "-s", "0", "-c", &count])
            .args(["tcp", "port", &port])
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("starting tcpdump");
        let capture = Capture { child, out, err };
        let started = Instant::now();
        while !std::fs::read_to_string(&capture.err)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tcpdump in {ns} did not start: {}",
                std::fs::read_to_string(&capture.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        capture
    }

    /// Stops the capture; returns its text.
    fn finish(mut self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

/// What a `tcpdump -vv` text says about checksums. A TCP checksum that tcpdump calls
/// incorrect is still right when it is a partial one (`CHECKSUM_PARTIAL`: a GSO super-packet
/// or an offloaded segment handed to the pod's kernel with the virtio-net header, as the
/// kernel path's veth does): the field then holds the folded pseudo-header sum (addresses,
/// protocol, TCP length), which is checked exactly; anything else is bad.
#[derive(Debug, Default, PartialEq, Eq)]
struct Checksums {
    packets: usize,
    correct: usize,
    partial: usize,
    bad: Vec<String>,
}

fn checksums(text: &str) -> Checksums {
    let mut found = Checksums::default();
    let mut ip_length: Option<u32> = None;
    for line in text.lines() {
        if line.starts_with("IP ") || line.contains(" IP (") {
            found.packets += 1;
            ip_length = ip_total_length(line);
            if line.contains("bad cksum") {
                found.bad.push(line.trim().to_owned());
            }
            continue;
        }
        if line.contains("(correct)") {
            found.correct += 1;
        }
        if line.contains("incorrect") {
            if ip_length.is_some_and(|len| partial_checksum_matches(line, len)) {
                found.partial += 1;
            } else {
                found.bad.push(line.trim().to_owned());
            }
        }
    }
    found
}

/// The IPv4 total length that tcpdump prints on the header line (`..., length N)`).
fn ip_total_length(line: &str) -> Option<u32> {
    let at = line.rfind("length ")?;
    let digits: String = line[at + 7..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Whether the TCP line's checksum field is the folded pseudo-header sum of its addresses,
/// protocol 6 and the TCP length (`ip_length` minus a 20-byte IPv4 header).
fn partial_checksum_matches(line: &str, ip_length: u32) -> bool {
    let mut words = line.split_whitespace();
    let (Some(src), Some(_), Some(dst)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    let address = |endpoint: &str| -> Option<u32> {
        let (ip, _port) = endpoint.trim_end_matches(':').rsplit_once('.')?;
        ip.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
    };
    let field = line
        .split("cksum 0x")
        .nth(1)
        .and_then(|rest| u16::from_str_radix(rest.get(..4)?, 16).ok());
    let (Some(src), Some(dst), Some(field)) = (address(src), address(dst), field) else {
        return false;
    };
    let Some(tcp_length) = ip_length.checked_sub(20) else {
        return false;
    };
    let mut sum = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + tcp_length;
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum == u32::from(field)
}

/// The time bound of a transfer of `bytes`.
fn bound(bytes: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 8.0 / (FLOOR_GBIT_S * 1e9)) + CONNECT_WITHIN
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Accepts one connection on `listener` (non-blocking) and hashes all it carries.
fn receive(listener: &TcpListener, case: &str, deadline: Instant) -> (u64, String, SocketAddr) {
    let (mut stream, peer) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "{case}: no connection reached the sink"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{case}: accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(STALL)).unwrap();
    let mut hash = Sha256Sum::start();
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!(
                "{case}: the receiver got {:.1} MiB, then {e} (nothing for {STALL:?}?)",
                mib(received)
            ),
        };
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n as u64;
        assert!(
            Instant::now() < deadline,
            "{case}: the receiver got only {:.1} MiB within the bound",
            mib(received)
        );
    }
    (received, hash.finish(), peer)
}

/// Connects from `ns` to `target`, retrying until [`CONNECT_WITHIN`].
fn connect(ns: &str, target: SocketAddr, case: &str) -> TcpStream {
    let started = Instant::now();
    loop {
        match netns::within(ns, || {
            Ok(TcpStream::connect_timeout(&target, Duration::from_secs(2))?)
        }) {
            Ok(stream) => return stream,
            Err(e) => assert!(
                started.elapsed() < CONNECT_WITHIN,
                "{case}: no connection from {ns} to {target} within {CONNECT_WITHIN:?}: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Moves `bytes` from namespace `sender` to `target`, which reaches the sink listening in
/// `receiver`; asserts the bytes and the capture; prints the figures.
fn transfer(sender: &str, target: SocketAddr, receiver: &str, bytes: u64, case: &str) {
    let listener = netns::within(receiver, || {
        let listener = TcpListener::bind(("0.0.0.0", PORT))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
    .unwrap();
    let capture = Capture::start(receiver, case);
    let retrans_before = retransmits(sender);
    let deadline = Instant::now() + bound(bytes);
    let (seed_gen, seed) = Generator::seeded();
    let started = Instant::now();
    let ((received, received_hash, peer), sent_hash) = std::thread::scope(|scope| {
        let sink = scope.spawn(|| receive(&listener, case, deadline));
        let mut stream = connect(sender, target, case);
        stream.set_write_timeout(Some(STALL)).unwrap();
        let mut generator = seed_gen;
        let mut hash = Sha256Sum::start();
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let n = usize::try_from((bytes - sent).min(CHUNK as u64)).unwrap();
            generator.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            if let Err(e) = stream.write_all(&buf[..n]) {
                panic!(
                    "{case}: the sender moved {:.1} of {:.0} MiB, then {e} (stalled {STALL:?}?)",
                    mib(sent),
                    mib(bytes)
                );
            }
            sent += n as u64;
            assert!(
                Instant::now() < deadline,
                "{case}: only {:.1} of {:.0} MiB sent within {:?} (under {FLOOR_GBIT_S} Gbit/s)",
                mib(sent),
                mib(bytes),
                bound(bytes)
            );
        }
        stream.shutdown(Shutdown::Write).unwrap();
        let sent_hash = hash.finish();
        (sink.join().unwrap(), sent_hash)
    });
    let elapsed = started.elapsed();
    let retrans = retransmits(sender) - retrans_before;
    let seen = checksums(&capture.finish());
    let gbit_s = received as f64 * 8.0 / elapsed.as_secs_f64() / 1e9;
    eprintln!(
        "bulk {case}: {:.0} MiB in {:.1} s = {gbit_s:.2} Gbit/s, {retrans} TCP retransmits \
         (sender), from {peer}, seed {seed:#x}, sha256 {sent_hash}; capture: {} packets in, \
         {} checksums verified correct, {} partial (offloaded, pseudo-header sum right), {} bad",
        mib(received),
        elapsed.as_secs_f64(),
        seen.packets,
        seen.correct,
        seen.partial,
        seen.bad.len()
    );
    assert_eq!(received, bytes, "{case}: bytes received");
    assert_eq!(
        received_hash, sent_hash,
        "{case}: SHA-256 at the receiver differs from the sender's (seed {seed:#x})"
    );
    assert!(
        seen.bad.is_empty(),
        "{case}: bad checksums coming in to the receiving pod: {:?}",
        &seen.bad[..seen.bad.len().min(10)]
    );
    assert!(
        seen.correct + seen.partial > 0,
        "{case}: the capture verified no checksum ({} packets)",
        seen.packets
    );
}

/// A pod without the client label gets no connection to the sink while it listens.
fn stranger_kept_out(cluster: &Cluster, target: SocketAddr) {
    let receiver = cluster.namespace("pod-default-bulk-sink");
    let listener = netns::within(&receiver, || {
        let listener = TcpListener::bind(("0.0.0.0", PORT))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
    .unwrap();
    let stranger = cluster.namespace("pod-default-bulk-stranger");
    let attempt = netns::within(&stranger, || {
        Ok(TcpStream::connect_timeout(
            &target,
            Duration::from_millis(1500),
        )?)
    });
    assert!(
        attempt.is_err(),
        "bulk-stranger connected to {target} despite the policy"
    );
    assert!(
        listener.accept().is_err(),
        "a connection of bulk-stranger reached the sink"
    );
}

fn bulk_cluster(tag: &str, mode: &str) -> Cluster {
    Cluster::up(
        tag,
        &[
            "--mode",
            mode,
            "-f",
            &format!("{DEMO}/00-nodes.yaml"),
            "-f",
            &format!("{MANIFESTS}/bulk.yaml"),
        ],
    )
}

fn service_addr(cluster: &Cluster, service: &str) -> SocketAddr {
    format!("{}:{PORT}", cluster.cluster_ip(service))
        .parse()
        .unwrap()
}

fn ingress_addr(cluster: &Cluster, service: &str) -> SocketAddr {
    let svc = cluster.get("svc", service);
    let ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{service} has no ingress IP: {svc}"));
    format!("{ip}:{PORT}").parse().unwrap()
}

#[test]
fn bulk_bytes_arrive_intact_over_vxlan_and_on_one_node() {
    let cluster = bulk_cluster("bv", "vxlan");
    let sink = cluster.namespace("pod-default-bulk-sink");
    let vip = service_addr(&cluster, "bulk-sink");
    stranger_kept_out(&cluster, vip);
    let far = cluster.namespace("pod-default-bulk-far");
    transfer(&far, vip, &sink, CROSS_NODE, "vxlan cross-node");
    let near = cluster.namespace("pod-default-bulk-near");
    transfer(&near, vip, &sink, OTHERS, "vxlan same-node");
}

#[test]
fn bulk_bytes_arrive_intact_from_the_internet_through_the_cloud_lb() {
    let cluster = bulk_cluster("bl", "vxlan");
    let sink = cluster.namespace("pod-default-bulk-sink");
    let internet = cluster.namespace("internet");
    for (service, case) in [
        ("bulk-lb-cluster", "lb policy Cluster"),
        ("bulk-lb-local", "lb policy Local"),
    ] {
        let lb = ingress_addr(&cluster, service);
        transfer(&internet, lb, &sink, OTHERS, case);
    }
}

#[test]
fn bulk_bytes_arrive_intact_over_the_routed_underlay() {
    let cluster = bulk_cluster("br", "routed");
    let sink = cluster.namespace("pod-default-bulk-sink");
    let vip = service_addr(&cluster, "bulk-sink");
    stranger_kept_out(&cluster, vip);
    let far = cluster.namespace("pod-default-bulk-far");
    transfer(&far, vip, &sink, CROSS_NODE, "routed cross-node");
}

#[test]
fn tcpdump_checksum_verdicts_are_counted() {
    let text = "IP (tos 0x0, ttl 63, id 1, offset 0, flags [DF], proto TCP (6), length 1500)\n    \
                10.244.0.2.40000 > 10.244.1.2.5201: Flags [.], cksum 0x1c46 (correct), seq 1:1449\n\
                IP (tos 0x0, ttl 63, id 2, offset 0, flags [DF], proto TCP (6), length 1500, bad cksum 12 (->34)!)\n    \
                10.244.0.2.40000 > 10.244.1.2.5201: Flags [.], cksum 0x1c47 (incorrect -> 0x1c46), seq 1449:2897\n\
                12:00:00.000000 IP (tos 0x0, ttl 63, id 3, offset 0, flags [DF], proto TCP (6), length 7292)\n    \
                10.244.0.2.33626 > 10.244.1.2.5201: Flags [P.], cksum 0x335a (incorrect -> 0x808b), seq 0:7240\n\
                12:00:00.000001 IP (tos 0x0, ttl 63, id 4, offset 0, flags [DF], proto TCP (6), length 7292)\n    \
                10.244.0.2.33626 > 10.244.1.2.5201: Flags [P.], cksum 0x335b (incorrect -> 0x808a), seq 7240:14480\n";
    let seen = checksums(text);
    // The second packet: a bad IP checksum, and a TCP one that is not the pseudo-header sum;
    // the third: a right partial checksum (its pseudo-header sum); the fourth: one off.
    assert_eq!(
        (seen.packets, seen.correct, seen.partial, seen.bad.len()),
        (4, 1, 1, 3)
    );
    let mut generator = Generator(1);
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    generator.fill(&mut a);
    generator.fill(&mut b);
    assert_ne!(a, b, "the generator repeats");
    assert!(bound(1 << 30) > Duration::from_secs(200));
}

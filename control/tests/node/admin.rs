//! The admin endpoint and its CLI verbs on a live node: a malformed frame is dropped, counted
//! under its reason and shown by `monitor`, and the process keeps forwarding; `capture` writes
//! a pcap of a port; `stats` reports traffic; `/healthz` answers.

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use crate::harness::{Backend, Node, service};

/// Sends one Ethernet frame whose IPv4 header is cut short, from inside a pod.
const MALFORMED: &str = r#"
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = open("/sys/class/net/eth0/address").read().strip()
src = bytes.fromhex(mac.replace(":", ""))
s.send(b"\xff" * 6 + src + b"\x08\x00" + b"\x45\x00\x00\x54\x00\x00")
"#;

#[test]
fn a_malformed_frame_is_counted_and_monitored_and_forwarding_goes_on() {
    let node = Node::start("mf", Backend::Tap, 2, 1, &service("echo", "mf-b", 80, 8080));
    let b = node.pods[1].ip.clone();
    let before = node.metric("ferroplane_drops_total", &["reason=\"malformed\""]);
    let mut monitor = std::process::Command::new(crate::harness::BIN)
        .args(["monitor", "--type", "drop", "--socket"])
        .arg(node.socket())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let the monitor subscribe before the frame goes out.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut events = BufReader::new(monitor.stdout.take().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    node.pods[0].ns.exec(&["python3", "-c", MALFORMED]);
    let mut line = String::new();
    events.read_line(&mut line).unwrap();
    let _ = monitor.kill();
    let _ = monitor.wait();
    assert!(
        line.contains("drop (malformed)") && line.contains("from default/mf-a"),
        "monitor said {line:?}"
    );
    loop {
        let now = node.metric("ferroplane_drops_total", &["reason=\"malformed\""]);
        if now > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no malformed drop counted\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.process.is_some());
    assert!(
        node.ping(0, &b),
        "forwarding stopped after the malformed frame"
    );
    let stats = node.cli(&["stats"]);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.status.success() && text.contains("malformed"),
        "{text}"
    );
    assert!(text.contains("default/mf-a"), "{text}");
}

#[test]
fn capture_writes_a_pcap_of_a_pod_port() {
    let node = Node::start("cp", Backend::AfPacket, 2, 1, "");
    let (a, b) = (node.pods[0].ip.clone(), node.pods[1].ip.clone());
    // Warm the ARP caches first, so the capture holds exactly the 6 ICMP echo frames.
    assert!(node.ping(0, &b));
    let file = node.dir.path().join("b.pcap");
    let mut capture = std::process::Command::new(crate::harness::BIN)
        .args(["capture", "--port", "default/cp-b", "-c", "6", "-w"])
        .arg(&file)
        .arg("--socket")
        .arg(node.socket())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(node.ping(0, &b));
    let status = capture.wait().unwrap();
    let mut err = String::new();
    capture
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    let mut reader = pcap_file::pcap::PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(reader.header().datalink, pcap_file::DataLink::ETHERNET);
    let (mut requests, mut replies) = (0, 0);
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        let parsed = etherparse::SlicedPacket::from_ethernet(&packet.data).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = parsed.net else {
            continue;
        };
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        if let Some(etherparse::TransportSlice::Icmpv4(icmp)) = parsed.transport {
            let pair = (src.to_string(), dst.to_string());
            match icmp.icmp_type() {
                etherparse::Icmpv4Type::EchoRequest(_) => {
                    assert_eq!(pair, (a.clone(), b.clone()));
                    requests += 1;
                }
                etherparse::Icmpv4Type::EchoReply(_) => {
                    assert_eq!(pair, (b.clone(), a.clone()));
                    replies += 1;
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        (requests, replies),
        (3, 3),
        "cp-b's port carried the 3 requests in and the 3 replies out"
    );
}

#[test]
fn healthz_is_served_on_the_node_and_stats_are_json() {
    let node = Node::start("hz", Backend::AfPacket, 1, 1, "");
    let out = node.node.run(&[
        "python3",
        "-c",
        "import urllib.request; r = urllib.request.urlopen('http://127.0.0.1:10256/healthz'); print(r.status, r.read().decode())",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("200 "),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"nodeEligible\":true"), "{text}");
    let (status, body) = node.admin("/stats").unwrap();
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["node"], "node-hz");
    assert_eq!(node.admin("/nope").unwrap().0, 404);
}

/// GETs `/metrics` on the TCP admin endpoint once per `Authorization` value (`-`: none) and
/// prints the status with, for a 401, the scheme asked for, else whether it is the metrics.
const TCP_ADMIN_CLIENT: &str = r#"
import sys, urllib.request, urllib.error
for auth in sys.argv[1:]:
    request = urllib.request.Request("http://127.0.0.1:9099/metrics")
    if auth != "-":
        request.add_header("Authorization", auth)
    try:
        r = urllib.request.urlopen(request, timeout=3)
        print(r.status, "ferroplane_drops_total" in r.read().decode())
    except urllib.error.HTTPError as e:
        print(e.code, e.headers.get("WWW-Authenticate"))
"#;

#[test]
fn the_tcp_admin_endpoint_answers_only_the_bearer_token() {
    let mut node = Node::start("tk", Backend::AfPacket, 1, 1, "");
    let token = "s3cret-token-0123456789";
    let token_file = node.dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = std::fs::read_to_string(node.config_path()).unwrap();
    let listen = format!(
        "admin:\n  listen: 127.0.0.1:9099\n  tokenFile: {}\n",
        token_file.display()
    );
    std::fs::write(node.config_path(), config.replace("admin:\n", &listen)).unwrap();
    // The admin settings apply at the next start.
    node.stop();
    node.launch();
    let wrong = "Bearer s3cret-token-0123456780".to_owned();
    let right = format!("Bearer {token}");
    let out = node.node.run(&[
        "python3",
        "-c",
        TCP_ADMIN_CLIENT,
        "-",
        &wrong,
        token,
        &right,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "401 Bearer realm=\"ferroplane\"",
            "401 Bearer realm=\"ferroplane\"",
            "401 Bearer realm=\"ferroplane\"",
            "200 True",
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

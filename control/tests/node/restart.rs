//! A restart of ferroplane keeps an established TCP connection through a ClusterIP, after a
//! clean stop (SIGTERM) and after a crash (SIGKILL): the flow table lives in a shared file the
//! next process adopts, so it keeps the same backend and translation.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::harness::{BIN, Backend, Node, service};

/// Sends a numbered line every 10 ms for `argv[3]` seconds over one connection and prints the
/// replies received and the longest gap between two replies, in ms.
const STEADY_CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = s.makefile("rwb", buffering=0)
print("connected", flush=True)
end = time.time() + float(sys.argv[3])
n, gap, last = 0, 0.0, time.time()
while time.time() < end:
    f.write(b"%d\n" % n)
    reply = f.readline()
    if not reply.startswith(b"%d from" % n):
        print("bad reply", reply, flush=True); sys.exit(1)
    now = time.time(); gap = max(gap, now - last); last = now; n += 1
    time.sleep(0.01)
print("replies", n, "max_gap_ms", int(gap * 1000), flush=True)
"#;

/// How the first process ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Sigterm,
    Sigkill,
}

fn restart_keeps_a_connection(tag: &str, backend: Backend, ending: Ending) {
    let mut node = Node::start(
        tag,
        backend,
        2,
        1,
        &service("echo", &format!("{tag}-b"), 80, 8080),
    );
    node.serve(1, 8080);
    let vip = node.cluster_ip("echo");
    let mut client =
        node.pods[0]
            .ns
            .spawn(&["python3", "-u", "-c", STEADY_CLIENT, &vip, "80", "6"]);
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    std::thread::sleep(Duration::from_secs(1));
    if let Ending::Sigkill = ending {
        second_process_is_refused(&node);
    }
    let stopped = match ending {
        Ending::Sigterm => node.stop(),
        Ending::Sigkill => node.kill(),
    };
    let ready = node.launch();
    let down = ready - stopped;
    let adopted = node.metric("ferroplane_conntrack_adopted_flows", &[]);
    assert!(
        adopted >= 1,
        "the new process adopted no flow\n{}",
        node.log()
    );
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = client.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "the connection broke: {line} {err}\n{}",
        node.log()
    );
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"replies"), "{line}");
    let replies: u64 = fields[1].parse().unwrap();
    let gap: u64 = fields[3].parse().unwrap();
    eprintln!(
        "restart ({backend:?}, {ending:?}): signal to the new process ready {} ms, longest traffic gap {gap} ms, {replies} replies",
        down.as_millis()
    );
    assert!(replies > 100, "{line}");
    // Generous: the gap is the outage plus the TCP retransmission timeout that notices it.
    let bound = match ending {
        Ending::Sigterm => 2_000,
        Ending::Sigkill => 5_000,
    };
    assert!(gap < bound, "{line}");
}

/// A second process for the same node fails at once, naming the locked flow-state file, and
/// leaves the first one running.
fn second_process_is_refused(node: &Node) {
    let out = node
        .node
        .run(&[BIN, "run", "--config", node.config_path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second process started:\n{stderr}");
    assert!(
        stderr.contains("conntrack.shm") && stderr.contains("locked by another process"),
        "{stderr}"
    );
    assert_eq!(node.admin("/healthz").map(|(status, _)| status), Some(200));
}

#[test]
fn a_restart_keeps_a_tcp_connection_through_a_cluster_ip_tap() {
    restart_keeps_a_connection("rt", Backend::Tap, Ending::Sigterm);
}

#[test]
fn a_restart_keeps_a_tcp_connection_through_a_cluster_ip_af_packet() {
    restart_keeps_a_connection("ra", Backend::AfPacket, Ending::Sigterm);
}

#[test]
fn a_crash_keeps_a_tcp_connection_through_a_cluster_ip_tap() {
    restart_keeps_a_connection("kt", Backend::Tap, Ending::Sigkill);
}

#[test]
fn a_crash_keeps_a_tcp_connection_through_a_cluster_ip_af_packet() {
    restart_keeps_a_connection("ka", Backend::AfPacket, Ending::Sigkill);
}

#[test]
fn a_crash_keeps_a_tcp_connection_through_a_cluster_ip_af_xdp() {
    restart_keeps_a_connection("kx", Backend::AfXdp, Ending::Sigkill);
}

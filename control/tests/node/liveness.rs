//! `/healthz` and `/livez` mean it: a worker thread that stops (frozen with ptrace, as a
//! thread stuck in the kernel or dead would look) turns both 503 with the reason in the body,
//! and they recover when it runs again.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use crate::harness::{Backend, Node};
use crate::scripts::FREEZE_THREAD;

/// The thread id of the node process's thread named `name`.
fn thread_id(node: &Node, name: &str) -> u32 {
    let pid = node.process.as_ref().unwrap().id();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            return task.file_name().to_string_lossy().parse().unwrap();
        }
    }
    panic!("no thread {name} in process {pid}");
}

fn wait_for(node: &Node, path: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((got, body)) = node.admin(path)
            && got == status
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_frozen_worker_fails_healthz_and_livez_with_the_reason_until_it_runs_again() {
    let node = Node::start("lz", Backend::Tap, 1, 1, "");
    let body = wait_for(&node, "/healthz", 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["nodeEligible"], true, "{body}");
    assert_eq!(json["lastUpdated"], json["currentTime"], "{body}");
    let tid = thread_id(&node, "fp-worker-0");
    let mut freezer =
        node.node
            .spawn_with_stdin(&["python3", "-c", FREEZE_THREAD, &tid.to_string()]);
    let mut line = String::new();
    BufReader::new(freezer.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "stopped");
    let body = wait_for(&node, "/healthz", 503);
    assert!(body.contains("worker 0 has completed no round"), "{body}");
    let livez = wait_for(&node, "/livez", 503);
    assert!(livez.contains("worker 0 has completed no round"), "{livez}");
    let (_, metrics) = node.admin("/metrics").unwrap();
    assert!(metrics.contains("ferroplane_healthy 0"), "{metrics}");
    drop(freezer.stdin.take());
    let _ = freezer.wait();
    wait_for(&node, "/healthz", 200);
    assert!(node.metric("kubeproxy_proxy_healthz_total", &["code=\"503\""]) >= 1);
}

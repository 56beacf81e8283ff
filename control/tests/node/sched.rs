//! How workers hold their cores: a worker under SCHED_FIFO forwards, then sleeps (its class,
//! wakeups and idle time in `/stats`, `/metrics` and `ferroplane stats`, its thread's class
//! in /proc); a class the machine refuses stops the start naming the setting, a refused
//! default falls back with a warning.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{BIN, Backend, Node, require_root};

fn worker_stats(node: &Node) -> serde_json::Value {
    let (status, body) = node.admin("/stats").expect("/stats");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    stats["workers"][0]["scheduling"].clone()
}

/// Policy (field 41) and real-time priority (field 40) of the thread named `name` of `pid`.
fn thread_class(pid: u32, name: &str) -> (u64, u64) {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields after the parenthesised command name start at field 3.
        let rest: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        return (rest[41 - 3].parse().unwrap(), rest[40 - 3].parse().unwrap());
    }
    panic!("no thread {name} in process {pid}");
}

#[test]
fn a_fifo_worker_forwards_then_sleeps_and_reports_its_class_and_time() {
    let mut node = Node::start_with_workers(
        "sf",
        Backend::Tap,
        "af-packet",
        2,
        1,
        "",
        "  scheduling:\n    policy: fifo\n    priority: 2\n  idle: adaptive\n  spin: 20us\n",
    );
    let pid = node.process.as_ref().unwrap().id();
    assert_eq!(
        thread_class(pid, "fp-worker-0"),
        (1, 2),
        "SCHED_FIFO (1) priority 2"
    );
    node.serve(1, 8080);
    let (a, b) = (node.pods[0].ip.clone(), node.pods[1].ip.clone());
    assert_eq!(
        node.udp(0, &b, 8080, "hi"),
        format!("hi from {a}"),
        "{}",
        node.debug()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let s = worker_stats(&node);
        if s["wakeups"].as_u64().unwrap() > 0 && s["busy_ns"].as_u64().unwrap() > 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "no wakeup or busy time: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(first["policy"], "fifo", "{first}");
    assert_eq!(first["priority"], 2, "{first}");
    std::thread::sleep(Duration::from_millis(500));
    let later = worker_stats(&node);
    let grew = |key: &str| later[key].as_u64().unwrap() - first[key].as_u64().unwrap();
    assert!(
        grew("idle_ns") >= 300_000_000,
        "idle time grows: {first} -> {later}"
    );
    assert!(grew("sleeps") > 0, "it sleeps: {first} -> {later}");
    assert!(
        grew("rounds") < 1_000,
        "an idle worker sleeps instead of spinning: {first} -> {later}"
    );
    assert_eq!(
        node.metric(
            "ferroplane_worker_scheduling_info",
            &["worker=\"0\"", "policy=\"fifo\"", "priority=\"2\""]
        ),
        1
    );
    assert!(node.metric("ferroplane_worker_wakeups_total", &[]) > 0);
    let table = node.cli(&["stats"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("0 ") && l.contains("fifo")),
        "{table}"
    );
    assert!(
        node.log().contains("workers run as fifo priority 2"),
        "{}",
        node.log()
    );
}

#[test]
fn a_refused_class_stops_the_start_and_a_refused_default_falls_back() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.yaml");
    let base = format!(
        "nodeName: x\nports:\n  uplink:\n    interface: fp-no-such-nic\nflowState: {}\nadmin:\n  socket: {}\n",
        dir.path().join("ct.shm").display(),
        dir.path().join("admin.sock").display()
    );
    // Without CAP_SYS_NICE (and RLIMIT_RTPRIO 0, the default) the kernel refuses SCHED_FIFO.
    let run = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let out = Command::new("setpriv")
            .args([
                "--inh-caps=-sys_nice",
                "--bounding-set=-sys_nice",
                BIN,
                "run",
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(&format!(
        "{base}workers:\n  scheduling:\n    policy: fifo\n    priority: 10\n"
    ));
    assert!(
        stderr.contains("workers.scheduling: the machine refuses fifo priority 10")
            && stderr.contains("CAP_SYS_NICE"),
        "{stderr}"
    );
    // The default: a warning, the fallback, and the start goes on (to the missing NIC).
    let stderr = run(&base);
    assert!(
        stderr.contains("workers.scheduling: the default fifo priority 1 was refused"),
        "{stderr}"
    );
    assert!(stderr.contains("fp-no-such-nic"), "{stderr}");
}

/// UDP ping-pong client: argv[1]:argv[2], argv[3] round trips of 64 bytes, 1 ms apart (so the
/// worker falls asleep between them); prints p50 p90 p99 p99.9 max in microseconds and the
/// number lost.
const PING_PONG: &str = r#"
import socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.connect((ip, port))
def once():
    t = time.perf_counter_ns(); s.send(b"x" * 64)
    try:
        s.recv(2048); return time.perf_counter_ns() - t
    except socket.timeout:
        return None
for _ in range(100): once()
rtts, lost = [], 0
for _ in range(n):
    r = once()
    if r is None: lost += 1
    else: rtts.append(r)
    time.sleep(0.001)
rtts.sort()
q = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))] // 1000
print(q(0.5), q(0.9), q(0.99), q(0.999), rtts[-1] // 1000, lost)
"#;

/// A CPU-bound process that ends by itself after two minutes.
const HOG: &str = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n";

/// Not a test: the side-by-side that chose the default class. UDP round trips from one pod to
/// a ClusterIP backed by another pod on the same node, the worker pinned to the last CPU,
/// with and without two `nice -n 19` CPU hogs pinned there too, for each class (twice,
/// interleaved); the client and the echo server run real-time on another CPU, so the worker's
/// wait is what varies. Prints
/// p50/p90/p99/p99.9/max in microseconds. Run it alone, as root, under the netns lock:
/// `cargo test -p control --test node -- --ignored --nocapture sched::measure`
/// (FP_SCHED_RTTS round trips per run, default 3000).
#[test]
#[ignore = "a measurement, not a test"]
fn measure_udp_round_trips_by_class() {
    let n: usize = std::env::var("FP_SCHED_RTTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let cpu = std::thread::available_parallelism().map_or(0, |c| c.get() - 1);
    let other_cpu = cpu.saturating_sub(1).to_string();
    let classes = [
        ("other", "  scheduling:\n    policy: other\n"),
        (
            "other+100us slice",
            "  scheduling:\n    policy: other\n    slice: 100us\n",
        ),
        (
            "fifo 1",
            "  scheduling:\n    policy: fifo\n    priority: 1\n",
        ),
        ("other", "  scheduling:\n    policy: other\n"),
        (
            "fifo 1",
            "  scheduling:\n    policy: fifo\n    priority: 1\n",
        ),
    ];
    let mut rows = Vec::new();
    for (i, (name, yaml)) in classes.iter().enumerate() {
        let tag = format!("m{i}");
        let mut node = Node::start_with_workers(
            &tag,
            Backend::Tap,
            "af-packet",
            2,
            1,
            &crate::harness::service("echo", &format!("{tag}-b"), 80, 8080),
            &format!("  cores: [{cpu}]\n{yaml}"),
        );
        // The pods' processes on the other CPU, real-time: the worker's class is the variable.
        let mut server = node.pods[1].ns.spawn(&[
            "chrt",
            "-f",
            "10",
            "taskset",
            "-c",
            &other_cpu,
            "python3",
            "-u",
            "-c",
            crate::scripts::ECHO_SERVER,
            "8080",
        ]);
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(server.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready");
        node.servers.push(server);
        let vip = node.cluster_ip("echo");
        for hogs in [0, 2] {
            let mut hog_procs: Vec<_> = (0..hogs)
                .map(|_| {
                    Command::new("taskset")
                        .args(["-c", &cpu.to_string(), "nice", "-n", "19"])
                        // One process (taskset and nice exec), so kill() stops it.
                        .args(["python3", "-c", HOG])
                        .spawn()
                        .unwrap()
                })
                .collect();
            let out = node.pods[0].ns.run(&[
                "chrt",
                "-f",
                "10",
                "taskset",
                "-c",
                &other_cpu,
                "python3",
                "-c",
                PING_PONG,
                &vip,
                "80",
                &n.to_string(),
            ]);
            for hog in &mut hog_procs {
                let _ = hog.kill();
                let _ = hog.wait();
            }
            let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            rows.push(format!("{name:<20} hogs {hogs}  {line}"));
            eprintln!("{}", rows.last().unwrap());
        }
    }
    eprintln!(
        "\n{n} UDP round trips through a ClusterIP, worker on CPU {cpu}; columns: p50 p90 p99 p99.9 max (us), lost"
    );
    for row in rows {
        eprintln!("{row}");
    }
}

/// The CPUs the thread named `name` of `pid` may run on (`Cpus_allowed_list`).
fn thread_cpus(pid: u32, name: &str) -> String {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap();
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        return line.trim().to_owned();
    }
    panic!("no thread {name} in process {pid}");
}

#[test]
fn per_cpu_workers_are_pinned_one_per_cpu_and_forward_with_steering() {
    let cpus = dataplane::io::thread::allowed_cpus().unwrap();
    assert!(cpus.len() >= 2, "needs two CPUs, has {cpus:?}");
    let mut node = Node::start_with_workers(
        "pc",
        Backend::Tap,
        "af-packet",
        2,
        0,
        "",
        "  perCpu: true\n  idle: keep-warm\n",
    );
    let pid = node.process.as_ref().unwrap().id();
    for (i, cpu) in cpus.iter().enumerate() {
        assert_eq!(thread_cpus(pid, &format!("fp-worker-{i}")), cpu.to_string());
    }
    assert!(
        node.log().contains(&format!(
            "workers.perCpu: a worker on each of CPUs {cpus:?}"
        )),
        "{}",
        node.log()
    );
    node.serve(1, 8080);
    let (a, b) = (node.pods[0].ip.clone(), node.pods[1].ip.clone());
    for _ in 0..4 {
        assert_eq!(
            node.udp(0, &b, 8080, "hi"),
            format!("hi from {a}"),
            "{}",
            node.debug()
        );
    }
    let (status, body) = node.admin("/stats").expect("/stats");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        stats["workers"].as_array().map(Vec::len),
        Some(cpus.len()),
        "{stats}"
    );
}

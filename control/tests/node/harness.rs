//! A node in network namespaces: a state directory with one Node and its Pods, a node
//! namespace running the real `ferroplane run`, an underlay namespace on its uplink, and one
//! namespace per pod wired to the node's pod ports the way a CNI would (TAP moved into the pod,
//! or a veth whose node end ferroplane opens with AF_PACKET or AF_XDP).
//!
//! Invariant: everything a `Node` made (processes, namespaces, its temporary directory) goes
//! away when it is dropped, on success and on panic; the log is printed on panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use control::node::pod_interface_name;

pub use crate::netns::{Netns, must, require_root};
use crate::scripts::{ECHO_SERVER, TCP_CLIENT, TX_CSUM_OFF, UDP_CLIENT};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferroplane");
pub const NODE_IP: &str = "192.168.100.10";
pub const UNDERLAY_IP: &str = "192.168.100.1";
pub const GATEWAY: &str = "10.244.0.1";

/// How pods are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Tap,
    AfPacket,
    AfXdp,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Tap => "tap",
            Backend::AfPacket => "af-packet",
            Backend::AfXdp => "af-xdp",
        }
    }
}

pub struct Pod {
    pub name: String,
    pub ip: String,
    pub ns: Netns,
}

/// Additions to the node.yaml a test node runs with: keys (indented) in the `workers` and
/// `admin` sections, and top-level keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeYaml<'a> {
    pub workers: &'a str,
    pub admin: &'a str,
    pub top: &'a str,
}

/// One node with its pods, running ferroplane.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub node: Netns,
    pub underlay: Netns,
    pub pods: Vec<Pod>,
    pub process: Option<Child>,
    /// Processes started in pods (servers), killed on drop.
    pub servers: Vec<Child>,
    restarts: u32,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Node {
    /// A cluster with node `node-<tag>` and pods `<tag>-a`, `<tag>-b`, ... (10.244.0.2, .3, ...)
    /// and the extra manifests, and ferroplane running with `workers` workers.
    pub fn start(tag: &str, backend: Backend, pods: usize, workers: usize, extra: &str) -> Node {
        Node::start_with_uplink(tag, backend, "af-packet", pods, workers, extra)
    }

    /// As [`Node::start`], with the uplink on `uplink` (`af-packet`, `af-xdp`, `tap`).
    pub fn start_with_uplink(
        tag: &str,
        backend: Backend,
        uplink: &str,
        pods: usize,
        workers: usize,
        extra: &str,
    ) -> Node {
        Node::start_with_workers(tag, backend, uplink, pods, workers, extra, "")
    }

    /// As [`Node::start_with_uplink`], with `workers_yaml` (indented keys) added to the
    /// `workers` section of node.yaml.
    pub fn start_with_workers(
        tag: &str,
        backend: Backend,
        uplink: &str,
        pods: usize,
        workers: usize,
        extra: &str,
        workers_yaml: &str,
    ) -> Node {
        let yaml = NodeYaml {
            workers: workers_yaml,
            ..NodeYaml::default()
        };
        Node::start_with_yaml(tag, backend, uplink, pods, workers, extra, &yaml)
    }

    /// As [`Node::start_with_uplink`], with the node.yaml additions of `yaml`.
    pub fn start_with_yaml(
        tag: &str,
        backend: Backend,
        uplink: &str,
        pods: usize,
        workers: usize,
        extra: &str,
        yaml: &NodeYaml,
    ) -> Node {
        require_root();
        let test = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ferroplane = |args: &[&str], stdin: &str| {
            let mut child = Command::new(BIN)
                .arg("--state")
                .arg(&state)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "ferroplane {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ferroplane(&["init"], "");
        let mut manifest = format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{tag}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: {NODE_IP}\n---\n"
        );
        let pod_names: Vec<(String, String)> = (0..pods)
            .map(|i| {
                (
                    format!("{tag}-{}", (b'a' + i as u8) as char),
                    format!("10.244.0.{}", i + 2),
                )
            })
            .collect();
        for (name, ip) in &pod_names {
            manifest.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    app: {name}\nspec:\n  nodeName: node-{tag}\n  containers:\n  - name: app\nstatus:\n  podIP: {ip}\n---\n"
            ));
        }
        manifest.push_str(extra);
        ferroplane(&["apply", "-f", "-"], &manifest);

        let node = Netns::new(test, "node");
        let underlay = Netns::new(test, "ul");
        node.ip(&[
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "ul0",
            "netns",
            &underlay.name,
        ]);
        node.ip(&["link", "set", "up0", "up"]);
        underlay.ip(&["addr", "add", &format!("{UNDERLAY_IP}/24"), "dev", "ul0"]);
        underlay.ip(&["link", "set", "ul0", "up"]);
        let pods: Vec<Pod> = pod_names
            .into_iter()
            .enumerate()
            .map(|(i, (name, ip))| Pod {
                ns: Netns::new(test, &format!("p{i}")),
                name,
                ip,
            })
            .collect();
        if backend != Backend::Tap {
            for pod in &pods {
                let iface = pod_interface_name("default", &pod.name);
                node.ip(&[
                    "link",
                    "add",
                    &iface,
                    "mtu",
                    "1450",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "mtu",
                    "1450",
                    "netns",
                    &pod.ns.name,
                ]);
                node.ip(&["link", "set", &iface, "up"]);
            }
        }
        // This node's pod namespaces only: other tests' pods have the same addresses and MACs.
        let netns_dir = dir.path().join("netns");
        std::fs::create_dir(&netns_dir).unwrap();
        for pod in &pods {
            std::os::unix::fs::symlink(
                Path::new("/run/netns").join(&pod.ns.name),
                netns_dir.join(&pod.ns.name),
            )
            .unwrap();
        }
        let mut this = Node {
            dir,
            backend,
            node,
            underlay,
            pods,
            process: None,
            servers: Vec::new(),
            restarts: 0,
        };
        this.write_config(workers, uplink, yaml);
        this.launch();
        this.wire_pods();
        this
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("node.yaml")
    }

    /// `workers` 0 writes no `workers.count` (the node decides, e.g. `perCpu`).
    fn write_config(&self, workers: usize, uplink: &str, yaml: &NodeYaml) {
        let underlay_mac = self.underlay.exec(&["cat", "/sys/class/net/ul0/address"]);
        let count = match workers {
            0 => String::new(),
            n => format!("  count: {n}\n"),
        };
        let config = format!(
            "nodeName: {name}\nsource: state\nstateDir: {state}\nports:\n  uplink:\n    interface: up0\n    backend: {uplink}\n    nextHopMAC: {mac}\n  host:\n    interface: fp-host\n  pods:\n    backend: {backend}\n    netnsDir: {netns}\nworkers:\n{count}{workers_yaml}conntrack:\n  maxEntries: 16384\nadmin:\n  socket: {socket}\n{admin_yaml}health:\n  bindAddress: 0.0.0.0:10256\nflowState: {flow_state}\n{top_yaml}",
            name = self.node_name(),
            state = self.dir.path().join("state").display(),
            mac = underlay_mac.trim(),
            backend = self.backend.name(),
            socket = self.socket().display(),
            flow_state = self.dir.path().join("conntrack.shm").display(),
            netns = self.dir.path().join("netns").display(),
            workers_yaml = yaml.workers,
            admin_yaml = yaml.admin,
            top_yaml = yaml.top,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn node_name(&self) -> String {
        let state = self.dir.path().join("state/objects/nodes");
        let entry = std::fs::read_dir(state).unwrap().next().unwrap().unwrap();
        entry
            .path()
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("ferroplane-{}.log", self.restarts))
    }

    /// Starts ferroplane in the node namespace and waits until `/healthz` answers 200.
    pub fn launch(&mut self) -> Instant {
        self.restarts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.node.name, BIN, "run", "--config"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Some(status) = self.process.as_mut().unwrap().try_wait().unwrap() {
                panic!("ferroplane exited ({status}):\n{}", self.log());
            }
            if self
                .admin("/healthz")
                .is_some_and(|(status, _)| status == 200)
            {
                return Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ferroplane did not become healthy:\n{}", self.log());
    }

    /// SIGTERMs ferroplane and waits for a clean exit; returns when the signal was sent.
    pub fn stop(&mut self) -> Instant {
        let mut child = self.process.take().unwrap();
        let signalled = Instant::now();
        must("kill", &["-TERM", &child.id().to_string()]);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "ferroplane exited with {status}:\n{}",
            self.log()
        );
        signalled
    }

    /// SIGKILLs ferroplane (a crash: nothing runs on the way out) and reaps it; returns when
    /// the signal was sent.
    pub fn kill(&mut self) -> Instant {
        let mut child = self.process.take().unwrap();
        let signalled = Instant::now();
        must("kill", &["-KILL", &child.id().to_string()]);
        let status = child.wait().unwrap();
        assert!(!status.success(), "ferroplane survived SIGKILL: {status}");
        signalled
    }

    /// The log, `/stats` and the pods' links, for failure messages.
    pub fn debug(&self) -> String {
        let stats = self.admin("/stats").map(|(_, b)| b).unwrap_or_default();
        let links: String = self
            .pods
            .iter()
            .map(|p| {
                String::from_utf8_lossy(&p.ns.run(&["ip", "-s", "link", "show", "eth0"]).stdout)
                    .into_owned()
                    + &String::from_utf8_lossy(&p.ns.run(&["ip", "neigh"]).stdout)
            })
            .collect();
        format!("{}\nstats: {stats}\nlinks:\n{links}", self.log())
    }

    pub fn log(&self) -> String {
        (1..=self.restarts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("ferroplane-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("---- restart ----\n")
    }

    /// Brings each pod's interface into its namespace (TAP) and configures it like a CNI.
    fn wire_pods(&self) {
        for pod in &self.pods {
            let iface = pod_interface_name("default", &pod.name);
            if self.backend == Backend::Tap {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !self.node.has_link(&iface) {
                    assert!(
                        Instant::now() < deadline,
                        "ferroplane created no TAP {iface} for {}:\n{}",
                        pod.name,
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                self.node
                    .ip(&["link", "set", &iface, "netns", &pod.ns.name]);
                pod.ns.ip(&["link", "set", &iface, "name", "eth0"]);
            } else {
                // No super-frames towards the packet socket (AF_PACKET sees GSO skbs whole).
                pod.ns.ip(&["link", "set", "eth0", "gso_max_segs", "1"]);
            }
            if self.backend == Backend::AfXdp {
                // AF_XDP carries no "checksum partial" mark: the pod sends whole checksums.
                pod.ns.exec(&["python3", "-c", TX_CSUM_OFF, "eth0"]);
            }
            let octets: Vec<u8> = pod.ip.split('.').map(|o| o.parse().unwrap()).collect();
            let mac = format!(
                "0a:58:{:02x}:{:02x}:{:02x}:{:02x}",
                octets[0], octets[1], octets[2], octets[3]
            );
            pod.ns.ip(&["link", "set", "eth0", "address", &mac]);
            // The pod's /24 without its connected route: every destination, other pods
            // included, goes through the gateway, the only address ferroplane answers ARP
            // for on a pod port.
            let address = format!("{}/24", pod.ip);
            pod.ns
                .ip(&["addr", "add", &address, "dev", "eth0", "noprefixroute"]);
            pod.ns.ip(&["link", "set", "eth0", "up"]);
            pod.ns
                .ip(&["route", "add", GATEWAY, "dev", "eth0", "scope", "link"]);
            pod.ns.ip(&["route", "add", "default", "via", GATEWAY]);
        }
    }

    /// Starts the echo server on `port` in pod `i` and waits until it listens.
    pub fn serve(&mut self, i: usize, port: u16) {
        self.serve_in(i, port);
    }

    /// Starts the echo server on `port` in pod `i`, or in the underlay for `usize::MAX`.
    pub fn serve_in(&mut self, i: usize, port: u16) {
        let ns = self.pods.get(i).map_or(&self.underlay, |p| &p.ns);
        let mut child = ns.spawn(&["python3", "-u", "-c", ECHO_SERVER, &port.to_string()]);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        self.servers.push(child);
    }

    /// `GET target` on the admin socket: status and body.
    pub fn admin(&self, target: &str) -> Option<(u16, String)> {
        let mut stream = UnixStream::connect(self.socket()).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// Sum of a metric's samples whose line contains every one of `labels`.
    pub fn metric(&self, name: &str, labels: &[&str]) -> u64 {
        let (_, text) = self.admin("/metrics").unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Runs the ferroplane CLI against this node's admin socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .unwrap()
    }

    /// `ping` from pod `from` to `to`: true when every echo was answered.
    pub fn ping(&self, from: usize, to: &str) -> bool {
        self.pods[from]
            .ns
            .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
            .status
            .success()
    }

    pub fn tcp(&self, from: usize, ip: &str, port: u16, text: &str) -> String {
        let out =
            self.pods[from]
                .ns
                .run(&["python3", "-c", TCP_CLIENT, ip, &port.to_string(), text]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
            + &String::from_utf8_lossy(&out.stderr)
    }

    pub fn udp(&self, from: usize, ip: &str, port: u16, text: &str) -> String {
        let out =
            self.pods[from]
                .ns
                .run(&["python3", "-c", UDP_CLIENT, ip, &port.to_string(), text]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The ClusterIP of Service `name` in `default`.
    pub fn cluster_ip(&self, name: &str) -> String {
        let out = Command::new(BIN)
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .args(["get", "svc", name, "-o", "json"])
            .output()
            .unwrap();
        let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        svc["spec"]["clusterIP"].as_str().unwrap().to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("ferroplane log:\n{}", self.log());
        }
    }
}

/// A Service selecting pod `app` on `port` -> `target`.
pub fn service(name: &str, app: &str, port: u16, target: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  selector:\n    app: {app}\n  ports:\n  - name: tcp\n    port: {port}\n    targetPort: {target}\n    protocol: TCP\n  - name: udp\n    port: {port}\n    targetPort: {target}\n    protocol: UDP\n---\n"
    )
}

//! The "Method" and "Machine" sections of the report: what each build is, what each
//! workload does, and what was pinned how.
//!
//! Invariant: the numbers quoted (trial lengths, counts, CPUs) come from the comparison
//! itself, so the text cannot drift from what ran.

use std::fmt::Write;

use super::crr::CLIENTS;
use super::ferroplane::FLOW_TABLE;
use super::hogs::{HOG_LIMIT, PER_CPU};
use super::latency::RUN_LIMIT;
use super::report::Comparison;
use super::testbed_demo::{BACKEND_POD, CLIENT_POD};
use super::udp_rate::FLOWS;

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The latency workloads, as both modes run them.
fn latency_text(c: &Comparison) -> String {
    let w = &c.workloads;
    format!(
        "Latency, once per background load: idle; {PER_CPU} busy-loop processes per CPU on \
         cpu {hogs} at nice 0; the same at nice 19 (the harness itself run as `compare hog`: \
         pinned with `sched_setaffinity`, the nice value set absolutely with `setpriority`, \
         killed when the run ends, on error and on panic, and exiting by themselves after \
         {limit} s or when the harness is gone; measuring starts 0.3 s after they start). \
         Under each: {rt} sequential UDP round trips of 8-byte payloads to the echo port \
         (one flow; 64-byte frames), then {setups} TCP connects through the ClusterIP timed \
         to the SYN-ACK (connection setup, closed with a reset); each bounded to {run} s. \
         Per run p50, p90, p99, p99.9 and max (nearest rank, so each is a measured sample); \
         the distribution chart pools the runs. The 1-minute load average is read after each \
         load's runs (it includes the hogs and everything else on this shared machine).",
        hogs = cpu_list(&c.hog_cpus),
        limit = HOG_LIMIT.as_secs(),
        rt = w.round_trips,
        setups = w.setups,
        run = RUN_LIMIT.as_secs(),
    )
}

/// The bulk workload, one sentence.
fn bulk_text(c: &Comparison) -> String {
    format!(
        "iperf3 for {} s through `bulk` (its server in the first backend), one stream and \
         eight (`-P 8`), client to backend and back (`-R`), client and server on cpu {}: the \
         receiver's rate, and CPU per GB received: the busy time of every CPU (as for UDP) \
         from the client's start to its exit over the bytes received; the 1-minute load \
         average after the four runs is a row of its own.",
        c.workloads.bulk_seconds, c.load_cpu
    )
}

/// The method of `--testbed`.
fn testbed_text(c: &Comparison) -> String {
    format!(
        "### Method\n\n\
         Reproduce with `cargo run --release -p bench --bin compare -- --testbed` (as root; \
         `--io tap|af-packet|af-xdp`, `--kernel-rx rps,default`, `--quick`, `--runs N`). \
         First the testbed's demo cluster as `testbed up` brings it up (the testbed library: \
         the demo manifests, two nodes, VXLAN, ferroplane per node with the testbed's node \
         configuration: one worker, no pinning, default affinity), plus two Services \
         selecting `{BACKEND_POD}` (node 2): one at {vip} with the harness's ports, one at \
         {bulk_vip} for iperf3; requests come from \
         `{CLIENT_POD}` (node 1); the harness's echo and TCP servers answer in `{BACKEND_POD}`'s \
         namespace, {pinned}, as is the client. Then the cluster is torn down and \
         the comparison's kernel path is built (flannel-style VXLAN, a bridge, kube-proxy \
         iptables rules; client pod on node 1, the Service's backends on node 2), once with \
         RPS steering the nodes' receive work onto cpu {dp} and once without (as users run \
         it), and measured the same way. The demo cluster's node processes may run on every \
         CPU, so the hogs load every CPU ({hogs}) for every row alike.\n\n{latency}\n\n\
         Then, in each run, {bulk_text}\n\n",
        vip = super::services::BENCH_VIP,
        bulk_vip = super::services::BULK_VIP,
        bulk_text = bulk_text(c),
        pinned = if super::cpu::pods_pinned() {
            format!("pinned to cpu {}", c.load_cpu)
        } else {
            "not pinned (`--pods-cpu any`)".to_owned()
        },
        dp = c.dataplane_cpu,
        hogs = cpu_list(&c.hog_cpus),
        latency = latency_text(c),
    )
}

pub fn text(c: &Comparison) -> String {
    let w = &c.workloads;
    let mut out = String::new();
    if c.testbed {
        out.push_str(&testbed_text(c));
        machine(c, &mut out);
        return out;
    }
    let _ = writeln!(
        out,
        "### Method\n\n\
         Reproduce with `cargo run --release -p bench --bin compare` (as root; `--quick`, \
         `--runs N`, `--only ferroplane,iptables,nftables,ovs`, `--io`, `--kernel-rx \
         rps,default`, `--worker-sched other|fifo:PRIO|rr:PRIO`, `--worker-idle busy-poll|spin:MICROS`, \
         repeatable; `--latency-only`). One topology for all: an \
         underlay bridge, two node namespaces (192.168.50.2 and .3), a client pod on node 1 \
         and two backend pods on node 2 (veth `eth0`, MTU 1450), VXLAN between the nodes (UDP \
         8472, VNI 1). The Service `bench` (ClusterIP {bench_vip}; UDP 9000 sink, UDP 9001 \
         echo, TCP 9002) selects both backends; `bulk` ({bulk_vip}, TCP 5201) only the first, \
         for iperf3. The backends' servers are threads of the harness with sockets opened in \
         the pods.\n\n\
         - **ferroplane**: the testbed library (`testbed::lifecycle::up`), each node's \
         `ferroplane run` then restarted under `taskset -c {dp}` (every thread on the \
         dataplane CPU, one worker) with a {FLOW_TABLE}-entry flow table (the kernel's \
         `nf_conntrack_max` here); with `--worker-sched` the node configuration also gets \
         `workers.scheduling` (a row per policy; without it nothing is written: the node's \
         default), with `--worker-idle` `workers.idle` and `workers.spin` (a row per mode and \
         policy). Pods attach as labelled: a veth whose node end ferroplane \
         opens with AF_PACKET rings or with AF_XDP (generic XDP), or a TAP.\n\
         - **kernel**: per node a `flannel.1`-like VXLAN device (nolearning, static FDB, \
         neighbour and route per peer), a `cni0`-like bridge with the pod veths, \
         `bridge-nf-call-iptables=1`, and kube-proxy's rules: iptables mode \
         (`KUBE-SERVICES`/`KUBE-SVC-*` with `-m statistic --mode random`/`KUBE-SEP-*` DNAT, \
         `KUBE-MARK-MASQ`/`KUBE-POSTROUTING`, `KUBE-FORWARD`, flannel's masquerade and \
         forward chains, loaded by `iptables-restore`) or nftables mode (a `kube-proxy` \
         table: `service-ips` verdict map, per-Service chains with `numgen random mod N \
         vmap`, `dnat`; flannel's `flannel-ipv4` table; loaded by `nft -f`). Kernel \
         conntrack. Each mode in two rows: \"RPS to the dataplane CPU\" (receive steering, \
         below: the kernel's work on the dataplane's core, at an inter-processor interrupt \
         per packet) and \"no RPS, as users run it\" (default affinity: the work runs in the \
         softirq of the CPU that sends the packet, here the load CPU).\n\
         - **OVS**: per node a private `ovsdb-server` + `ovs-vswitchd` inside the node \
         namespace, started under `taskset -c {dp}` with `pmd-cpu-mask` selecting cpu {dp}; a \
         `netdev` bridge with the uplink whose internal port holds the node IP (userspace \
         VXLAN tunnelling), and a `netdev` integration bridge with the pod veths and a VXLAN \
         port; OpenFlow: ARP responder for the gateway, `ct(zone=1,nat)` on every IP packet \
         (un-NATs replies), new connections to a Service port to a select group whose buckets \
         do `ct(commit,nat(dst=BACKEND))`, routing by destination. Pods' `eth0` has TX \
         checksum offload off (the userspace datapath reads veths through packet sockets).\n\n\
         Pinning: the load tools (generator, sinks, echo and TCP servers, iperf3, connect \
         loops) on cpu {load}; the dataplane on cpu {dp}: ferroplane's and OVS's processes by \
         affinity, and in every build but the kernel's no-RPS rows receive packet steering \
         (RPS, `rps_cpus`) on every device of the node namespaces, so the kernel's receive work for a frame entering a \
         node (the kernel path itself; the packet-socket delivery into ferroplane and OVS) \
         runs on cpu {dp}. Both nodes' dataplanes share cpu {dp}: with two CPUs there is no \
         other way to keep the load off the dataplane's core. A dataplane that polls while \
         idle (ferroplane for `workers.spin`, 50 us, after its last packet before it sleeps \
         in poll(2), as SCHED_FIFO yielding to the other node's worker meanwhile; OVS's PMD \
         threads always) shares that core with the other node's \
         dataplane, which then waits for its turn: that adds to every latency figure; the \
         kernel path works in softirq and does not wait so. The pod's own sending stack runs on the load CPU in \
         every build.\n\n\
         Workloads, in each run: (1) UDP: {FLOWS} flows of 18-byte payloads (64-byte frames) \
         from `sendmmsg` in the client pod to the sink port, counted by `recvmmsg` sinks; one \
         unpaced trial, then up to {steps} bisection steps over the offered rate, {trial:.1} s \
         each, a rate passing with < 0.1% loss. CPU over the best passing trial, per million \
         packets delivered: each CPU's busy time, the elapsed time less its idle and iowait \
         time in `/proc/stat` (kept exactly on this tickless kernel, where tick-sampled busy \
         time would miss the kernel path's softirq bursts); it counts whatever ran there, so \
         other load on this shared machine shows too (the load average is noted per \
         dataplane). (2) {latency} (3) {CLIENTS} \
         threads doing connect, 1-byte request, 1-byte reply, close for {crr:.0} s. \
         (4) {bulk_text} Then, per Service count \
         ({scales}; the catalog holds `bench` and `bulk` in the middle, the rest decoy \
         Services with two endpoints each, so the Service under test is in the middle of \
         kube-proxy's `KUBE-SERVICES` list), {connects} TCP connects per run timed to the \
         SYN-ACK (closed with a reset). Dataplanes run one after another, not interleaved: \
         drift from other load on the machine shows as spread between runs.\n",
        bench_vip = super::services::BENCH_VIP,
        bulk_vip = super::services::BULK_VIP,
        dp = c.dataplane_cpu,
        load = c.load_cpu,
        steps = w.search.steps,
        trial = w.search.trial.as_secs_f64(),
        latency = latency_text(c),
        crr = w.crr_for.as_secs_f64(),
        bulk_text = bulk_text(c),
        scales = w
            .scales
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        connects = w.connects,
    );
    machine(c, &mut out);
    out
}

fn machine(c: &Comparison, out: &mut String) {
    let m = &c.machine;
    let _ = writeln!(
        out,
        "### Machine\n\n\
         - CPU: {} ({} CPUs); memory {:.1} GiB; Linux {}\n\
         - load average at start: {}\n\
         - source revision: {}\n\
         - tools: {}",
        m.cpu_model,
        m.cpus,
        m.memory_gib,
        m.kernel,
        m.load_average,
        m.revision,
        m.tools.join("; ")
    );
}

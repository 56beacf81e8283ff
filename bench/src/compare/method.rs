//! The "Method" and "Machine" sections of the report: what each build is, what each
//! workload does, and what was pinned how.
//!
//! Invariant: the numbers quoted (trial lengths, counts, CPUs) come from the comparison
//! itself, so the text cannot drift from what ran.

use std::fmt::Write;

use super::crr::CLIENTS;
use super::ferroplane::FLOW_TABLE;
use super::report::Comparison;
use super::udp_rate::FLOWS;

pub fn text(c: &Comparison) -> String {
    let w = &c.workloads;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Method\n\n\
         Reproduce with `cargo run --release -p bench --bin compare` (as root; `--quick`, \
         `--runs N`, `--only ferroplane,iptables,nftables,ovs`). One topology for all: an \
         underlay bridge, two node namespaces (192.168.50.2 and .3), a client pod on node 1 \
         and two backend pods on node 2 (veth `eth0`, MTU 1450), VXLAN between the nodes (UDP \
         8472, VNI 1). The Service `bench` (ClusterIP {bench_vip}; UDP 9000 sink, UDP 9001 \
         echo, TCP 9002) selects both backends; `bulk` ({bulk_vip}, TCP 5201) only the first, \
         for iperf3. The backends' servers are threads of the harness with sockets opened in \
         the pods.\n\n\
         - **ferroplane**: the testbed library (`testbed::lifecycle::up`), each node's \
         `ferroplane run` then restarted under `taskset -c {dp}` (every thread on the \
         dataplane CPU, one worker) with a {FLOW_TABLE}-entry flow table (the kernel's \
         `nf_conntrack_max` here). Pods attach as labelled: a veth whose node end ferroplane \
         opens with AF_PACKET rings or with AF_XDP (generic XDP), or a TAP.\n\
         - **kernel**: per node a `flannel.1`-like VXLAN device (nolearning, static FDB, \
         neighbour and route per peer), a `cni0`-like bridge with the pod veths, \
         `bridge-nf-call-iptables=1`, and kube-proxy's rules: iptables mode \
         (`KUBE-SERVICES`/`KUBE-SVC-*` with `-m statistic --mode random`/`KUBE-SEP-*` DNAT, \
         `KUBE-MARK-MASQ`/`KUBE-POSTROUTING`, `KUBE-FORWARD`, flannel's masquerade and \
         forward chains, loaded by `iptables-restore`) or nftables mode (a `kube-proxy` \
         table: `service-ips` verdict map, per-Service chains with `numgen random mod N \
         vmap`, `dnat`; flannel's `flannel-ipv4` table; loaded by `nft -f`). Kernel \
         conntrack.\n\
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
         affinity, and in every build receive packet steering (RPS, `rps_cpus`) on every \
         device of the node namespaces, so the kernel's receive work for a frame entering a \
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
         dataplane). (2) {rt} sequential UDP round trips to the echo port (one flow). (3) {CLIENTS} \
         threads doing connect, 1-byte request, 1-byte reply, close for {crr:.0} s. \
         (4) iperf3 for {bulk} s, one stream, through `bulk`. Then, per Service count \
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
        rt = w.round_trips,
        crr = w.crr_for.as_secs_f64(),
        bulk = w.bulk_seconds,
        scales = w
            .scales
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        connects = w.connects,
    );
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
    out
}

//! `ferroplane-cni`: the CNI 1.1 plugin (the `ferroplane` binary run under that name).
//!
//! The runtime execs it with `CNI_COMMAND` and friends in the environment and the network
//! configuration on stdin; it answers on stdout (a result, or an error object with exit
//! status 1). ADD allocates the pod's addresses from the node's podCIDRs, one per family
//! ([`ipam`]; `podCIDR`/`podCIDRFile` hold one range or a comma-separated pair), creates the
//! pod's device in the runtime's netns ([`link`]) and prints the result ([`spec`]); DEL undoes
//! that and is idempotent; CHECK compares the pod with `prevResult`; STATUS says whether the
//! node process answers; GC frees the addresses of attachments the runtime no longer has.
//! With `adminSocket`, ADD asks the node process to attach the pod's port (with the hostPorts
//! of `runtimeConfig.portMappings`) once the device is set up, and DEL to detach it
//! ([`attach`]).
//!
//! Invariants:
//! - A failing ADD leaves nothing behind: the address it took is freed and the links it
//!   created are deleted before the error is printed; that includes an ADD the node process
//!   did not acknowledge (down, a hostPort another pod holds, a port it could not open).
//! - Every error carries a spec code and a message naming the cause (variable, field, file).
//! - The pod's MAC is `0a:58:<IPv4 address>` and its node-side name
//!   `pod_interface_name(namespace, name)`, which is how the node process finds the pod's
//!   device. Every pod has an IPv4 address (the dataplane keys pod ports by it): a node with
//!   only an IPv6 podCIDR is refused with a message saying so.
//! - Each family's default route goes through its gateway: IPv4 the podCIDR's first address
//!   (on a link route), IPv6 the link-local `fe80::1`, both answered by the dataplane (ARP,
//!   neighbour discovery); addresses carry no connected route.

pub mod attach;
pub mod ipam;
pub mod link;
pub mod spec;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::compile::node::pod_mac;
use crate::node::pod_interface_name;
use ipam::{PodRange, Store};
use spec::{Attached, CniError, CniResult, InterfaceKind, Mode, NetConf, PodAddress, code};

/// The name the binary answers to as a CNI plugin.
pub const PLUGIN_NAME: &str = "ferroplane-cni";

/// VXLAN's overhead on the uplink MTU (outer Ethernet is not counted: 20 IP + 8 UDP + 8 VXLAN
/// + 14 inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;

/// The plugin's entry point: reads the process environment and stdin, prints the answer.
/// With arguments (runtimes pass none) it is the installer: `ferroplane-cni install BIN_DIR
/// CONF_DIR CONFLIST` (the DaemonSet's init container; the image has no shell to copy with).
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return match args.as_slice() {
            [verb, bin_dir, conf_dir, conflist] if verb == "install" => {
                match install(Path::new(bin_dir), Path::new(conf_dir), Path::new(conflist)) {
                    Ok(done) => {
                        println!("{done}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("ferroplane-cni install: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            _ => {
                eprintln!(
                    "usage: ferroplane-cni install BIN_DIR CONF_DIR CONFLIST \
                     (as a CNI plugin it takes no arguments)"
                );
                ExitCode::from(2)
            }
        };
    }
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    let command = env.get("CNI_COMMAND").map(String::as_str);
    let read = if command == Some("VERSION") && stdin_is_terminal() {
        Ok(0)
    } else {
        std::io::stdin().read_to_end(&mut stdin)
    };
    let outcome = match read {
        Ok(_) => run(&env, &stdin),
        Err(e) => Err(CniError::io("reading stdin", e)),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(value)) => {
            let _ = writeln!(out, "{}", serde_json::to_string(&value).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(out, "{}", serde_json::to_string(&error).unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

/// Copies this binary to `bin_dir/ferroplane-cni` and `conflist` into `conf_dir`, each
/// written under a temporary name and renamed, so a runtime never execs or reads half a file.
/// The conflist is checked first: a broken one is never installed.
pub fn install(bin_dir: &Path, conf_dir: &Path, conflist: &Path) -> Result<String, String> {
    let text = std::fs::read(conflist).map_err(|e| format!("{}: {e}", conflist.display()))?;
    let list: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", conflist.display()))?;
    let plugins = list["plugins"]
        .as_array()
        .ok_or_else(|| format!("{}: no plugins list", conflist.display()))?;
    for plugin in plugins {
        let mut entry = plugin.clone();
        entry["cniVersion"] = list["cniVersion"].clone();
        entry["name"] = list["name"].clone();
        if entry["type"] == PLUGIN_NAME {
            spec::parse_conf(entry.to_string().as_bytes())
                .map_err(|e| format!("{}: {e}", conflist.display()))?;
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let conf_name = conflist
        .file_name()
        .ok_or_else(|| format!("{} names no file", conflist.display()))?;
    let copy = |from: &Path, dir: &Path, name: &std::ffi::OsStr| -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let target = dir.join(name);
        let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        std::fs::copy(from, &temp)
            .and_then(|_| std::fs::rename(&temp, &target))
            .map_err(|e| format!("installing {}: {e}", target.display()))?;
        Ok(target)
    };
    let bin = copy(&exe, bin_dir, std::ffi::OsStr::new(PLUGIN_NAME))?;
    let conf = copy(conflist, conf_dir, conf_name)?;
    Ok(format!(
        "installed {} and {}",
        bin.display(),
        conf.display()
    ))
}

fn stdin_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

/// One invocation: `env` holds the `CNI_*` variables, `stdin` the configuration.
pub fn run(env: &BTreeMap<String, String>, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let command = require(env, "CNI_COMMAND")?;
    if command == "VERSION" {
        return Ok(Some(version(stdin)));
    }
    let conf = spec::parse_conf(stdin)?;
    let with_version = |e: CniError| CniError {
        cni_version: conf.cni_version.clone(),
        ..e
    };
    let call = Call::from_env(env, command).map_err(with_version)?;
    match command {
        "ADD" => add(&conf, &call).map(Some),
        "DEL" => del(&conf, &call).map(|()| None),
        "CHECK" => check(&conf, &call).map(|()| None),
        "STATUS" => status(&conf).map(|()| None),
        "GC" => gc(&conf).map(|()| None),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
        )),
    }
    .map_err(with_version)
}

fn require<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, CniError> {
    env.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CniError::new(code::INVALID_ENV, format!("{name} is not set")))
}

/// The VERSION answer, in the version stdin names when this plugin speaks it.
fn version(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
        v.get("cniVersion")
            .and_then(Value::as_str)
            .filter(|v| spec::SUPPORTED_VERSIONS.contains(v))
            .map(str::to_owned)
    });
    spec::version_info(asked.as_deref().unwrap_or("1.1.0"))
}

/// The per-attachment variables.
struct Call {
    container_id: String,
    netns: Option<PathBuf>,
    ifname: String,
    args: BTreeMap<String, String>,
}

impl Call {
    fn from_env(env: &BTreeMap<String, String>, command: &str) -> Result<Call, CniError> {
        let attachment = matches!(command, "ADD" | "DEL" | "CHECK");
        let get = |name: &str| -> Result<String, CniError> {
            if attachment {
                require(env, name).map(str::to_owned)
            } else {
                Ok(env.get(name).cloned().unwrap_or_default())
            }
        };
        let container_id = get("CNI_CONTAINERID")?;
        let ifname = get("CNI_IFNAME")?;
        if attachment {
            require(env, "CNI_PATH")?;
            if ifname.len() > 15 || ifname.contains('/') || ifname.contains(char::is_whitespace) {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_IFNAME {ifname:?} is not a valid interface name"),
                ));
            }
        }
        let netns = match command {
            "ADD" | "CHECK" => Some(PathBuf::from(require(env, "CNI_NETNS")?)),
            _ => env
                .get("CNI_NETNS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        let args = spec::parse_args(env.get("CNI_ARGS").map_or("", String::as_str))?;
        Ok(Call {
            container_id,
            netns,
            ifname,
            args,
        })
    }

    /// The pod's namespace and name (`CNI_ARGS`), or the container ID without them.
    fn pod_name(&self) -> (String, String) {
        match (
            self.args.get("K8S_POD_NAMESPACE"),
            self.args.get("K8S_POD_NAME"),
        ) {
            (Some(ns), Some(name)) => (ns.clone(), name.clone()),
            _ => (String::new(), self.container_id.clone()),
        }
    }

    /// The node-side name of the pod's device.
    fn host_name(&self) -> String {
        match (
            self.args.get("K8S_POD_NAMESPACE"),
            self.args.get("K8S_POD_NAME"),
        ) {
            (Some(ns), Some(name)) => pod_interface_name(ns, name),
            _ => pod_interface_name("", &self.container_id),
        }
    }

    /// The addresses `IP=` asks for (host-local's form: one address or a comma-separated
    /// list, at most one per family).
    fn requested_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let Some(list) = self.args.get("IP") else {
            return Ok(Vec::new());
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let ip: IpAddr = text.parse().map_err(|_| {
                CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_ARGS IP={list:?}: {text:?} is not an IP address"),
                )
            })?;
            if ips.iter().any(|other| other.is_ipv4() == ip.is_ipv4()) {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_ARGS IP={list:?} asks for two addresses of one family"),
                ));
            }
            ips.push(ip);
        }
        Ok(ips)
    }
}

/// The node's podCIDRs (one per family, primary first), from the configuration or the file
/// it names.
fn pod_ranges(conf: &NetConf) -> Result<Vec<PodRange>, CniError> {
    let text = match (&conf.pod_cidr, &conf.pod_cidr_file) {
        (Some(cidr), _) => cidr.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).map_err(|e| {
            CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "podCIDRFile {file}: {e} (the node process writes it once it knows its podCIDR)"
                ),
            )
        })?,
        (None, None) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "the network configuration names neither podCIDR nor podCIDRFile",
            ));
        }
    };
    let ranges = PodRange::parse_list(&text).map_err(|e| CniError::new(code::INVALID_CONFIG, e))?;
    if !ranges.iter().any(PodRange::is_ipv4) {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "podCIDRs {}: no IPv4 range; IPv6-only pods are not supported yet (the \
                 dataplane keys pod ports and MACs by the pod's IPv4 address)",
                text.trim()
            ),
        ));
    }
    Ok(ranges)
}

fn pod_mtu(conf: &NetConf) -> Result<u32, CniError> {
    if let Some(mtu) = conf.mtu {
        if !(576..=65535).contains(&mtu) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("mtu {mtu} is outside 576..=65535"),
            ));
        }
        return Ok(mtu);
    }
    let uplink = match &conf.uplink_interface {
        Some(name) => link::mtu_of(name).map_err(|e| {
            CniError::new(code::INVALID_CONFIG, format!("uplinkInterface {name}: {e}"))
        })?,
        None => 1500,
    };
    Ok(match conf.mode {
        Mode::Vxlan => uplink.saturating_sub(VXLAN_OVERHEAD),
        Mode::Routed => uplink,
    })
}

/// Asks the node process's admin socket for `/healthz`; any HTTP answer means it runs.
fn node_answers(socket: &str) -> Result<(), String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connecting to {socket}: {e}"))?;
    let timeout = Some(Duration::from_secs(2));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .and_then(|()| stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n"))
        .map_err(|e| format!("asking {socket}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("reading the answer of {socket}: {e}"))?;
    if head.starts_with(b"HTTP/") {
        Ok(())
    } else {
        Err(format!("{socket} answered something other than HTTP"))
    }
}

fn require_node(conf: &NetConf, unavailable: u32) -> Result<(), CniError> {
    if let Some(socket) = &conf.admin_socket {
        node_answers(socket).map_err(|e| {
            CniError::new(
                unavailable,
                format!("the ferroplane node process does not answer on its admin socket: {e}"),
            )
        })?;
    }
    Ok(())
}

fn netns_of(call: &Call) -> Result<&Path, CniError> {
    let netns = call
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(code::INVALID_ENV, "CNI_NETNS is not set"))?;
    if !netns.exists() {
        return Err(CniError::new(
            code::CONTAINER_UNKNOWN,
            format!("CNI_NETNS {} does not exist", netns.display()),
        ));
    }
    Ok(netns)
}

fn add(conf: &NetConf, call: &Call) -> Result<Value, CniError> {
    let netns = netns_of(call)?;
    let ranges = pod_ranges(conf)?;
    let mtu = pod_mtu(conf)?;
    let requested = call.requested_ips()?;
    if let Some(stray) = requested
        .iter()
        .find(|ip| !ranges.iter().any(|r| r.same_family(**ip)))
    {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            format!(
                "requested address {stray} (CNI_ARGS IP) is of no family of the node's podCIDRs"
            ),
        ));
    }
    let host_ports = attach::port_mappings(conf.runtime_config.as_ref())
        .map_err(|e| CniError::new(code::INVALID_CONFIG, e))?;
    require_node(conf, code::TRY_AGAIN_LATER)?;
    let data_dir = Path::new(&conf.data_dir);
    let allocated = {
        let store = Store::open(data_dir, &conf.name)?;
        let mut allocated = Vec::new();
        let mut failed = None;
        for range in &ranges {
            let wanted = requested.iter().copied().find(|ip| range.same_family(*ip));
            let step = store
                .check_range(*range)
                .and_then(|()| store.allocate(*range, &call.container_id, &call.ifname, wanted));
            match step {
                Ok(ip) => allocated.push(PodAddress {
                    address: ip,
                    prefix_len: range.prefix_len,
                    gateway: gateway_of(range),
                }),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(error) = failed {
            let _ = store.release(&call.container_id, &call.ifname);
            return Err(error);
        }
        allocated
    };
    // pod_ranges guarantees an IPv4 range, so this finds the address allocated in it.
    let address = match ipv4_of(&allocated) {
        Ok(address) => address,
        Err(error) => {
            if let Ok(store) = Store::open(data_dir, &conf.name) {
                let _ = store.release(&call.container_id, &call.ifname);
            }
            return Err(error);
        }
    };
    let wired = set_up_interface(conf, call, netns, mtu, &allocated).and_then(|attached| {
        attach_to_node(conf, call, netns, address, host_ports)?;
        Ok(attached)
    });
    match wired {
        Ok(attached) => {
            let result = CniResult::new(
                &conf.cni_version,
                &attached,
                conf.dns.clone().unwrap_or_default(),
            );
            serde_json::to_value(result).map_err(|e| CniError::io("encoding the result", e))
        }
        Err(error) => {
            if error.code != code::HOST_PORT_TAKEN {
                let _ = detach_from_node(conf, call);
            }
            undo(conf, call, netns, address);
            if let Ok(store) = Store::open(data_dir, &conf.name) {
                let _ = store.release(&call.container_id, &call.ifname);
            }
            Err(error)
        }
    }
}

/// Asks the node process to attach the pod's port (nothing without `adminSocket`).
fn attach_to_node(
    conf: &NetConf,
    call: &Call,
    netns: &Path,
    address: Ipv4Addr,
    host_ports: Vec<attach::HostPort>,
) -> Result<(), CniError> {
    let Some(socket) = &conf.admin_socket else {
        return Ok(());
    };
    let (namespace, name) = call.pod_name();
    let request = attach::PodAttachment {
        container_id: call.container_id.clone(),
        namespace,
        name,
        netns: netns.display().to_string(),
        ifname: call.ifname.clone(),
        device: match conf.interface {
            InterfaceKind::Veth => attach::DeviceKind::Veth,
            InterfaceKind::Tap => attach::DeviceKind::Tap,
        },
        ip: address,
        host_ports,
    };
    let (status, body) = attach::post(socket, &format!("/cni/attach?{}", request.to_query()))
        .map_err(|e| {
            CniError::new(
                code::TRY_AGAIN_LATER,
                format!("the ferroplane node process does not answer on its admin socket: {e}"),
            )
        })?;
    let refused = |code: u32| {
        CniError::new(
            code,
            format!("the ferroplane node process refused to attach the pod: {body}"),
        )
    };
    match status {
        200 => {}
        409 => return Err(refused(code::HOST_PORT_TAKEN)),
        _ => return Err(refused(code::IO_FAILURE)),
    }
    let answer: Value = serde_json::from_str(&body).map_err(|_| {
        CniError::new(
            code::IO_FAILURE,
            format!("the ferroplane node process answered the attach with {body:?}"),
        )
    })?;
    match answer.get("error").and_then(Value::as_str) {
        Some(error) => Err(CniError::new(
            code::IO_FAILURE,
            format!("the ferroplane node process could not attach the pod's port: {error}"),
        )),
        None if answer.get("port").is_some() => Ok(()),
        None => Err(CniError::new(
            code::IO_FAILURE,
            format!("the ferroplane node process answered the attach with {body:?}"),
        )),
    }
}

/// Asks the node process to forget the attachment. A node that does not answer is not an
/// error: DEL must succeed, and a restarted node drops records whose device is gone.
fn detach_from_node(conf: &NetConf, call: &Call) -> Result<(), CniError> {
    let Some(socket) = &conf.admin_socket else {
        return Ok(());
    };
    let query = attach::detach_query(&call.container_id, &call.ifname);
    match attach::post(socket, &format!("/cni/detach?{query}")) {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(CniError::new(
            code::IO_FAILURE,
            format!("the ferroplane node process refused the detach ({status}): {body}"),
        )),
        // Nothing to detach from; the record goes when the node restarts without the device.
        Err(_) => Ok(()),
    }
}

/// The gateway of `range`'s family: its first address in IPv4, the dataplane's link-local
/// gateway in IPv6.
fn gateway_of(range: &PodRange) -> IpAddr {
    if range.is_ipv4() {
        range.gateway()
    } else {
        IpAddr::V6(dataplane::tables::v6::GATEWAY_LINK_LOCAL)
    }
}

/// The IPv4 address among `addresses` (every attachment has one, see [`pod_ranges`]).
fn ipv4_of(addresses: &[PodAddress]) -> Result<Ipv4Addr, CniError> {
    addresses
        .iter()
        .find_map(|a| match a.address {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "the pod has no IPv4 address"))
}

/// Creates and configures the pod's device.
fn set_up_interface(
    conf: &NetConf,
    call: &Call,
    netns: &Path,
    mtu: u32,
    addresses: &[PodAddress],
) -> Result<Attached, CniError> {
    let address = ipv4_of(addresses)?;
    let host_name = call.host_name();
    let fail = |e: String| CniError::new(code::IO_FAILURE, e);
    let (current_name, host_interface) = match conf.interface {
        InterfaceKind::Veth => {
            // A leftover of a sandbox that was never deleted would block the name.
            link::delete_link(None, &host_name).map_err(fail)?;
            let temp = format!("fpc{:08x}", address.to_bits());
            let mac = link::create_veth(&host_name, &temp, netns, mtu).map_err(fail)?;
            (temp, Some((host_name, mac)))
        }
        InterfaceKind::Tap => {
            if link::exists(&host_name).map_err(fail)? {
                // The node process created it already: move it into the pod.
                link::move_link(&host_name, netns).map_err(fail)?;
                (host_name, None)
            } else {
                let ifname = call.ifname.clone();
                crate::node::netns::run_in(netns, || {
                    dataplane::io::tap::TapQueue::open(&ifname)?.set_persistent(true)
                })
                .map_err(|e| fail(format!("creating TAP {ifname} in the pod: {e}")))?;
                (call.ifname.clone(), None)
            }
        }
    };
    let pod = link::PodSide {
        current_name,
        ifname: call.ifname.clone(),
        mac: pod_mac(address).0,
        mtu,
        addresses: addresses.to_vec(),
        gso_max_segs: conf.gso_max_segs,
    };
    link::configure_pod_side(netns, &pod).map_err(fail)?;
    Ok(Attached {
        host_interface,
        pod_interface: call.ifname.clone(),
        pod_mac: pod.mac,
        mtu,
        netns: netns.display().to_string(),
        addresses: addresses.to_vec(),
    })
}

/// Deletes whatever a failed ADD may have created for this attachment, and nothing that was
/// there before it: the veth pair goes with its node end; a TAP only by the pod's MAC or by
/// the node-side name it was moved in with.
fn undo(conf: &NetConf, call: &Call, netns: &Path, address: Ipv4Addr) {
    match conf.interface {
        InterfaceKind::Veth => {
            let _ = link::delete_link(None, &call.host_name());
        }
        InterfaceKind::Tap => {
            let _ = link::delete_link_with_mac(Some(netns), &call.ifname, Some(pod_mac(address).0));
            let _ = link::delete_link(Some(netns), &call.host_name());
        }
    }
}

fn del(conf: &NetConf, call: &Call) -> Result<(), CniError> {
    detach_from_node(conf, call)?;
    if let Some(netns) = call.netns.as_deref().filter(|n| n.exists()) {
        link::delete_link(Some(netns), &call.ifname)
            .map_err(|e| CniError::new(code::IO_FAILURE, e))?;
    }
    if conf.interface == InterfaceKind::Veth {
        link::delete_link(None, &call.host_name())
            .map_err(|e| CniError::new(code::IO_FAILURE, e))?;
    }
    let store = Store::open(Path::new(&conf.data_dir), &conf.name)?;
    store.release(&call.container_id, &call.ifname)?;
    Ok(())
}

fn check(conf: &NetConf, call: &Call) -> Result<(), CniError> {
    let netns = netns_of(call)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "CHECK needs prevResult in the configuration",
        )
    })?;
    let prev: CniResult = serde_json::from_value(prev.clone())
        .map_err(|e| CniError::new(code::DECODE_FAILURE, format!("prevResult: {e}")))?;
    let mismatch = |msg: String| CniError::new(code::CHECK_MISMATCH, msg);
    let listed = prev.pod_addresses(&call.ifname);
    let ranges = pod_ranges(conf)?;
    let store = Store::open(Path::new(&conf.data_dir), &conf.name)?;
    let leases = store.leases()?;
    drop(store);
    let found = link::inspect(netns, &call.ifname)
        .map_err(|e| CniError::new(code::IO_FAILURE, e))?
        .ok_or_else(|| {
            mismatch(format!(
                "{} is missing from {}",
                call.ifname,
                netns.display()
            ))
        })?;
    // Every family of the node's podCIDRs, each checked on its own.
    for range in &ranges {
        let family = if range.is_ipv4() { "IPv4" } else { "IPv6" };
        let (address, prefix_len, _) = listed
            .iter()
            .copied()
            .find(|(ip, _, _)| range.same_family(*ip))
            .ok_or_else(|| {
                mismatch(format!(
                    "prevResult has no {family} address on {}",
                    call.ifname
                ))
            })?;
        let held = leases.iter().any(|l| {
            l.ip == address && l.container_id == call.container_id && l.ifname == call.ifname
        });
        if !held {
            return Err(mismatch(format!(
                "{address} is not allocated to container {} {}",
                call.container_id, call.ifname
            )));
        }
        if let IpAddr::V4(v4) = address
            && found.mac != Some(pod_mac(v4).0)
        {
            return Err(mismatch(format!(
                "{} has MAC {}, expected {}",
                call.ifname,
                found.mac.map(spec::mac_string).unwrap_or_default(),
                spec::mac_string(pod_mac(v4).0)
            )));
        }
        if !found.addresses.contains(&(address, prefix_len)) {
            return Err(mismatch(format!(
                "{} lacks {address}/{prefix_len} (has {:?})",
                call.ifname, found.addresses
            )));
        }
        let gateway = gateway_of(range);
        if !found.default_gateways.contains(&gateway) {
            return Err(mismatch(format!(
                "no {family} default route goes via {gateway} (default routes via {:?})",
                found.default_gateways
            )));
        }
    }
    Ok(())
}

fn status(conf: &NetConf) -> Result<(), CniError> {
    require_node(conf, code::PLUGIN_NOT_AVAILABLE)?;
    pod_ranges(conf).map_err(|e| CniError::new(code::PLUGIN_NOT_AVAILABLE, e.msg))?;
    Ok(())
}

fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let store = Store::open(Path::new(&conf.data_dir), &conf.name)?;
    store.collect_garbage(&valid)?;
    Ok(())
}

#[cfg(test)]
mod tests;

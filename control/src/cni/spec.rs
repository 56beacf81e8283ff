//! The CNI 1.1 wire format: the network configuration the runtime writes on stdin, the
//! result and error objects the plugin prints, and version negotiation (1.1.0, 1.0.0, 0.4.0).
//!
//! Invariants: a result is always printed in the `cniVersion` of the configuration that asked
//! for it (0.4.0 results carry `version: "4"` on each IP); an error always carries one of the
//! spec's codes (1-11, 50-51) or a plugin code from 100 up, a `msg` naming the cause and, where
//! useful, `details`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The versions this plugin speaks, oldest first (the order VERSION reports them).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The spec's well-known error codes (CNI 1.1, "Error").
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific (100 and up): CHECK found the pod's network differs from `prevResult`.
    pub const CHECK_MISMATCH: u32 = 100;
    /// Plugin-specific: a hostPort of `runtimeConfig.portMappings` is held by another pod.
    pub const HOST_PORT_TAKEN: u32 = 101;
}

/// A CNI error as printed on stdout (exit status 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            cni_version: "1.1.0".to_owned(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// An I/O failure (code 5) naming what failed.
    pub fn io(what: impl std::fmt::Display, error: impl std::fmt::Display) -> CniError {
        CniError::new(code::IO_FAILURE, format!("{what}: {error}"))
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// Which device the pod gets: a veth pair (for AF_PACKET/AF_XDP pod ports) or a TAP the
/// node process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceKind {
    #[default]
    Veth,
    Tap,
}

/// The dataplane's overlay mode, for the default MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Vxlan,
    Routed,
}

/// The plugin's entry of a conflist (plus what the runtime adds: `prevResult`,
/// `runtimeConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The node's podCIDR, or a file holding it (written by the node process or an admin).
    #[serde(default, rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(default, rename = "podCIDRFile")]
    pub pod_cidr_file: Option<String>,
    /// Where the address files live: `<dataDir>/<name>/<ip>`.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    #[serde(default)]
    pub interface: InterfaceKind,
    /// The pod MTU; without it the uplink's MTU, minus the VXLAN overhead in VXLAN mode.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub uplink_interface: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// `gso_max_segs` of the pod's device (1 for AF_XDP pod ports, which cannot take GSO
    /// super-frames; AF_PACKET pod ports take them with a virtio-net header).
    #[serde(default)]
    pub gso_max_segs: Option<u32>,
    /// The node process's admin socket: asked before ADD whether the node runs, then to attach
    /// the pod's port (and on DEL to detach it).
    #[serde(default)]
    pub admin_socket: Option<String>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(default)]
    pub runtime_config: Option<Value>,
    #[serde(default)]
    pub capabilities: Option<Value>,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<Attachment>>,
    #[serde(default, rename = "cni.dev/attachments")]
    pub attachments: Option<Vec<Attachment>>,
}

fn default_data_dir() -> String {
    "/var/lib/cni/networks".to_owned()
}

/// An attachment the runtime still holds (GC's `cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Parses stdin: malformed JSON is code 6, a missing or wrong field code 7 (naming the
/// field), an unsupported version code 1.
pub fn parse_conf(stdin: &[u8]) -> Result<NetConf, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::new(
            code::DECODE_FAILURE,
            "no network configuration on stdin",
        ));
    }
    let value: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(code::DECODE_FAILURE, "network configuration is not JSON")
            .details(e.to_string())
    })?;
    let version = value.get("cniVersion").and_then(Value::as_str);
    let conf: NetConf = serde_path_to_error::deserialize(&value).map_err(|e| {
        let error = CniError::new(
            code::INVALID_CONFIG,
            format!("network configuration: {} at {}", e.inner(), e.path()),
        );
        match version {
            Some(v) => CniError {
                cni_version: v.to_owned(),
                ..error
            },
            None => error,
        }
    })?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not supported (supported: {})",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    Ok(conf)
}

/// The VERSION answer.
pub fn version_info(cni_version: &str) -> Value {
    serde_json::json!({
        "cniVersion": cni_version,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Only in 0.4.0 results: `"4"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// An ADD result (and the `prevResult` CHECK and DEL get back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

/// What ADD set up, in version-independent form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub host_interface: Option<(String, [u8; 6])>,
    pub pod_interface: String,
    pub pod_mac: [u8; 6],
    pub mtu: u32,
    pub netns: String,
    /// One per family, the primary family first.
    pub addresses: Vec<PodAddress>,
}

/// One of the pod's addresses: its prefix length (the podCIDR's) and the gateway its
/// family's default route goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: IpAddr,
}

pub fn mac_string(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

impl CniResult {
    /// The result of `attached` in `version` (one of [`SUPPORTED_VERSIONS`]).
    pub fn new(version: &str, attached: &Attached, dns: Dns) -> CniResult {
        let mut interfaces = Vec::new();
        if let Some((name, mac)) = &attached.host_interface {
            interfaces.push(Interface {
                name: name.clone(),
                mac: mac_string(*mac),
                mtu: None,
                sandbox: String::new(),
            });
        }
        let pod_index = interfaces.len();
        interfaces.push(Interface {
            name: attached.pod_interface.clone(),
            mac: mac_string(attached.pod_mac),
            // `mtu` joined the interface object in 1.1.0.
            mtu: (version == "1.1.0").then_some(attached.mtu),
            sandbox: attached.netns.clone(),
        });
        CniResult {
            cni_version: version.to_owned(),
            interfaces,
            ips: attached
                .addresses
                .iter()
                .map(|a| IpConfig {
                    version: (version == "0.4.0")
                        .then(|| if a.address.is_ipv4() { "4" } else { "6" }.to_owned()),
                    address: format!("{}/{}", a.address, a.prefix_len),
                    gateway: Some(a.gateway.to_string()),
                    interface: Some(pod_index),
                })
                .collect(),
            routes: attached
                .addresses
                .iter()
                .map(|a| Route {
                    dst: if a.address.is_ipv4() {
                        "0.0.0.0/0"
                    } else {
                        "::/0"
                    }
                    .to_owned(),
                    gw: Some(a.gateway.to_string()),
                })
                .collect(),
            dns,
        }
    }

    /// The pod's addresses and prefix lengths in a previous result, on interface `ifname`,
    /// with the gateway each names (in the result's order).
    pub fn pod_addresses(&self, ifname: &str) -> Vec<(IpAddr, u8, Option<IpAddr>)> {
        self.ips
            .iter()
            .filter_map(|ip| {
                let on_pod = ip
                    .interface
                    .and_then(|i| self.interfaces.get(i))
                    .is_none_or(|i| i.name == ifname);
                let (addr, len) = ip.address.split_once('/')?;
                let gateway = ip.gateway.as_deref().and_then(|g| g.parse().ok());
                on_pod.then_some((addr.parse().ok()?, len.parse().ok()?, gateway))
            })
            .collect()
    }
}

/// The `CNI_ARGS` pairs (`K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;IP=...`).
pub fn parse_args(args: &str) -> Result<BTreeMap<String, String>, CniError> {
    args.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    CniError::new(
                        code::INVALID_ENV,
                        format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                    )
                })
        })
        .collect()
}

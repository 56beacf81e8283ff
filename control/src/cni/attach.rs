//! The attach protocol between the plugin and the node process's admin socket: ADD asks the
//! node to attach the pod's port (`POST /cni/attach?...`), DEL to detach it
//! (`POST /cni/detach?...`). The request carries everything in its query string (the admin
//! server reads no bodies); the node answers `/cni/attach` with one JSON line once the port is
//! attached on every worker (`{"port":N,"interface":"..."}`) or could not be
//! (`{"error":"..."}`), and 4xx with a message for a request it refuses (a hostPort another pod
//! holds).
//!
//! Also the runtime's `portMappings` capability (`runtimeConfig.portMappings`, as the
//! reference `portmap` plugin takes it), checked into [`HostPort`]s.
//!
//! Invariants: [`PodAttachment::to_query`] and [`PodAttachment::from_query`] are inverse; a
//! mapping that is not a whole TCP or UDP IPv4 hostPort is refused with its index and field.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long the plugin waits for the node's answer (the node itself gives up on a port it
/// cannot open after [`ATTACH_WAIT`]).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the node waits for a requested port to be attached before it answers an error.
pub const ATTACH_WAIT: Duration = Duration::from_secs(5);

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One hostPort of a pod: `host_ip:host_port/protocol` on the node goes to the pod's
/// `container_port`; without `host_ip`, on every address NodePorts answer on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPort {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<Ipv4Addr>,
}

impl HostPort {
    /// Whether `self` and `other` claim the same node port (the same address, or either on
    /// every address).
    pub fn overlaps(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }

    /// `8080/tcp` or `10.0.0.5:8080/tcp`.
    pub fn describe(&self) -> String {
        match self.host_ip {
            Some(ip) => format!(
                "hostPort {ip}:{}/{}",
                self.host_port,
                self.protocol.as_str()
            ),
            None => format!("hostPort {}/{}", self.host_port, self.protocol.as_str()),
        }
    }

    /// The query form: `tcp:8080:80` or `tcp:8080:80:10.0.0.5`.
    fn encode(&self) -> String {
        let base = format!(
            "{}:{}:{}",
            self.protocol.as_str(),
            self.host_port,
            self.container_port
        );
        match self.host_ip {
            Some(ip) => format!("{base}:{ip}"),
            None => base,
        }
    }

    fn decode(text: &str) -> Result<HostPort, String> {
        let bad = || format!("hostPort {text:?} is not PROTO:HOSTPORT:CONTAINERPORT[:HOSTIP]");
        let mut parts = text.split(':');
        let protocol = match parts.next() {
            Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            _ => return Err(bad()),
        };
        let port = |p: Option<&str>| p.and_then(|p| p.parse::<u16>().ok()).filter(|&p| p != 0);
        let host_port = port(parts.next()).ok_or_else(bad)?;
        let container_port = port(parts.next()).ok_or_else(bad)?;
        let host_ip = parts
            .next()
            .map(|ip| ip.parse::<Ipv4Addr>().map_err(|_| bad()))
            .transpose()?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(HostPort {
            protocol,
            host_port,
            container_port,
            host_ip,
        })
    }
}

/// The hostPorts of `runtimeConfig.portMappings` (absent: none). Each entry needs
/// `hostPort` and `containerPort` in 1..=65535; `protocol` is tcp (default) or udp, any case;
/// `hostIP` empty, `0.0.0.0` or an IPv4 address.
pub fn port_mappings(runtime_config: Option<&Value>) -> Result<Vec<HostPort>, String> {
    let Some(list) = runtime_config.and_then(|c| c.get("portMappings")) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or("runtimeConfig.portMappings is not a list")?;
    let mut out: Vec<HostPort> = Vec::new();
    for (index, entry) in list.iter().enumerate() {
        let at = |field: &str, why: String| {
            format!("runtimeConfig.portMappings[{index}].{field}: {why}")
        };
        let port = |field: &str| -> Result<u16, String> {
            let value = entry
                .get(field)
                .ok_or_else(|| at(field, "missing".into()))?;
            value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| at(field, format!("{value} is not a port in 1..=65535")))
        };
        let host_port = port("hostPort")?;
        let container_port = port("containerPort")?;
        let protocol = match entry.get("protocol").and_then(Value::as_str) {
            None => Protocol::Tcp,
            Some(p) if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
            Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
            Some(p) => {
                return Err(at("protocol", format!("{p:?} is not supported (tcp, udp)")));
            }
        };
        let host_ip = match entry.get("hostIP").and_then(Value::as_str) {
            None | Some("" | "0.0.0.0") => None,
            Some(ip) => Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| at("hostIP", format!("{ip:?} is not an IPv4 address")))?,
            ),
        };
        let mapping = HostPort {
            protocol,
            host_port,
            container_port,
            host_ip,
        };
        if let Some(earlier) = out.iter().find(|m| m.overlaps(&mapping)) {
            return Err(at(
                "hostPort",
                format!("{} is mapped twice in this pod", earlier.describe()),
            ));
        }
        out.push(mapping);
    }
    Ok(out)
}

/// The pod's device kind, as the node opens it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A veth pair whose node end is `pod_interface_name(namespace, name)`.
    Veth,
    /// A TAP: on the node under `pod_interface_name`, or `ifname` inside `netns`.
    Tap,
}

/// One attachment: what the node needs to open the pod's port and program its hostPorts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodAttachment {
    pub container_id: String,
    pub namespace: String,
    pub name: String,
    pub netns: String,
    pub ifname: String,
    pub device: DeviceKind,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
}

impl PodAttachment {
    /// `namespace/name`, the key the node's port manager and compiler use.
    pub fn pod_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The query string of `/cni/attach`.
    pub fn to_query(&self) -> String {
        let device = match self.device {
            DeviceKind::Veth => "veth",
            DeviceKind::Tap => "tap",
        };
        let mut query = format!(
            "container={}&namespace={}&name={}&netns={}&ifname={}&device={device}&ip={}",
            encode(&self.container_id),
            encode(&self.namespace),
            encode(&self.name),
            encode(&self.netns),
            encode(&self.ifname),
            self.ip
        );
        for port in &self.host_ports {
            query.push_str("&hostPort=");
            query.push_str(&encode(&port.encode()));
        }
        query
    }

    /// The attachment of a `/cni/attach` query (`get` returns a parameter, decoded; `all`
    /// every value of a repeated one).
    pub fn from_query(
        get: impl Fn(&str) -> Option<String>,
        all: impl Fn(&str) -> Vec<String>,
    ) -> Result<PodAttachment, String> {
        let need = |name: &str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("attach needs ?{name}="))
        };
        let device = match need("device")?.as_str() {
            "veth" => DeviceKind::Veth,
            "tap" => DeviceKind::Tap,
            other => return Err(format!("device {other:?} is not veth or tap")),
        };
        let ip = need("ip")?;
        let ip = ip
            .parse()
            .map_err(|_| format!("ip {ip:?} is not an IPv4 address"))?;
        let host_ports = all("hostPort")
            .iter()
            .map(|p| HostPort::decode(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PodAttachment {
            container_id: need("container")?,
            namespace: need("namespace")?,
            name: need("name")?,
            netns: need("netns")?,
            ifname: need("ifname")?,
            device,
            ip,
            host_ports,
        })
    }
}

/// The query string of `/cni/detach`.
pub fn detach_query(container_id: &str, ifname: &str) -> String {
    format!(
        "container={}&ifname={}",
        encode(container_id),
        encode(ifname)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One `POST` to the admin socket at `socket`: the status and the body.
pub fn post(socket: &str, path_and_query: &str) -> Result<(u16, String), String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("connecting to {socket}: {e}"))?;
    let timeout = Some(CLIENT_TIMEOUT);
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .and_then(|()| {
            stream.write_all(
                format!("POST {path_and_query} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
            )
        })
        .map_err(|e| format!("asking {socket}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("reading the answer of {socket}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{socket} answered no HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| head.starts_with("HTTP/"))
        .ok_or_else(|| format!("{socket} answered no HTTP status"))?;
    Ok((status, body.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_mappings_take_portmaps_shape_and_refuse_bad_entries() {
        let conf = json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "10.0.0.5"},
            {"hostPort": 9090, "containerPort": 90, "hostIP": ""},
        ]});
        let ports = port_mappings(Some(&conf)).unwrap();
        assert_eq!(ports.len(), 3);
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].host_ip, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(ports[2].protocol, Protocol::Tcp);
        assert_eq!(ports[2].host_ip, None);
        assert!(port_mappings(None).unwrap().is_empty());
        for (bad, needle) in [
            (
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
                "[0].hostPort",
            ),
            (
                json!({"portMappings": [{"hostPort": 70000, "containerPort": 80}]}),
                "[0].hostPort",
            ),
            (
                json!({"portMappings": [{"hostPort": 80}]}),
                "[0].containerPort: missing",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]}),
                "[0].protocol",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "fd00::1"}]}),
                "[0].hostIP",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 1}, {"hostPort": 80, "containerPort": 2}]}),
                "[1].hostPort: hostPort 80/tcp is mapped twice",
            ),
            (json!({"portMappings": {}}), "not a list"),
        ] {
            let error = port_mappings(Some(&bad)).unwrap_err();
            assert!(error.contains(needle), "{error} lacks {needle}");
        }
    }

    #[test]
    fn an_attachment_survives_its_query_form() {
        let attachment = PodAttachment {
            container_id: "abc 123/&=".to_owned(),
            namespace: "default".to_owned(),
            name: "web-1".to_owned(),
            netns: "/run/netns/cni-1234".to_owned(),
            ifname: "eth0".to_owned(),
            device: DeviceKind::Tap,
            ip: Ipv4Addr::new(10, 244, 1, 7),
            host_ports: vec![
                HostPort {
                    protocol: Protocol::Tcp,
                    host_port: 8080,
                    container_port: 80,
                    host_ip: None,
                },
                HostPort {
                    protocol: Protocol::Udp,
                    host_port: 53,
                    container_port: 5353,
                    host_ip: Some(Ipv4Addr::new(10, 0, 0, 1)),
                },
            ],
        };
        let query = attachment.to_query();
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let all = |name: &str| {
            pairs
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        assert_eq!(PodAttachment::from_query(get, all).unwrap(), attachment);
        let missing = PodAttachment::from_query(|_| None, |_| Vec::new()).unwrap_err();
        assert!(missing.contains("?device="), "{missing}");
        assert!(HostPort::decode("tcp:0:80").is_err());
        assert!(HostPort::decode("icmp:1:80").is_err());
        assert!(HostPort::decode("tcp:1:80:x").is_err());
    }

    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}

//! `ferroplane dns` in a dual-stack cluster, end to end: `init` with both families, objects
//! through `apply` (node IPAM, pod IPs, EndpointSlices per family from the controllers), and
//! real UDP queries: AAAA for Services and headless endpoints, `ip6.arpa` PTR, SRV whose
//! target resolves in both families.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

const BIN: &str = env!("CARGO_BIN_EXE_ferroplane");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ferroplane(dir: &std::path::Path, args: &[&str], stdin: &str) {
    let mut child = Command::new(BIN)
        .arg("--state")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn serve(dir: &std::path::Path) -> (Server, SocketAddr) {
    let mut child = Command::new(BIN)
        .arg("--state")
        .arg(dir)
        .args(["dns", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = received.recv_timeout(Duration::from_secs(20)).unwrap();
    let addr = line
        .split(" on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    (server, addr.parse().unwrap())
}

fn udp(addr: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(0x6666, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(&message.to_vec().unwrap(), addr).unwrap();
    let mut buffer = [0u8; 65535];
    let length = socket.recv(&mut buffer).unwrap();
    Message::from_vec(&buffer[..length]).unwrap()
}

fn rendered(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

const OBJECTS: &str = "apiVersion: v1
kind: Node
metadata:
  name: a
status:
  addresses:
  - type: InternalIP
    address: 192.168.50.11
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  labels:
    app: db
spec:
  nodeName: a
  hostname: db-0
  subdomain: db
  containers:
  - name: app
---
apiVersion: v1
kind: Pod
metadata:
  name: db-1
  labels:
    app: db
spec:
  nodeName: a
  containers:
  - name: app
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ipFamilyPolicy: PreferDualStack
  clusterIPs: [10.96.0.50, 'fd00:10:96::50']
  selector:
    app: web
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  ipFamilyPolicy: RequireDualStack
  selector:
    app: db
  ports:
  - name: pg
    port: 5432
";

#[test]
fn dual_stack_services_and_endpoints_answer_aaaa_ip6_arpa_and_srv() {
    let dir = tempfile::tempdir().unwrap();
    let init = [
        "init",
        "--cluster-cidr",
        "10.244.0.0/16,fd00:10:244::/56",
        "--service-cidr",
        "10.96.0.0/12,fd00:10:96::/108",
    ];
    ferroplane(dir.path(), &init, "");
    ferroplane(dir.path(), &["apply", "-f", "-"], OBJECTS);
    let (_server, addr) = serve(dir.path());
    let zone = "default.svc.cluster.local.";

    let web = format!("web.{zone}");
    assert_eq!(
        rendered(&udp(addr, &web, RecordType::A).answers),
        [format!("{web} 5 IN A 10.96.0.50")]
    );
    assert_eq!(
        rendered(&udp(addr, &web, RecordType::AAAA).answers),
        [format!("{web} 5 IN AAAA fd00:10:96::50")]
    );
    let ptr6 = "0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        rendered(&udp(addr, ptr6, RecordType::PTR).answers),
        [format!("{ptr6} 5 IN PTR {web}")]
    );
    let srv = udp(addr, &format!("_http._tcp.{web}"), RecordType::SRV);
    assert_eq!(
        rendered(&srv.answers),
        [format!("_http._tcp.{web} 5 IN SRV 0 100 80 {web}")]
    );
    assert_eq!(
        rendered(&srv.additionals),
        [
            format!("{web} 5 IN A 10.96.0.50"),
            format!("{web} 5 IN AAAA fd00:10:96::50")
        ],
        "the SRV target's addresses of both families"
    );

    // Headless: both families of every ready endpoint; db-0 by its hostname, db-1 by its
    // dashed addresses (one name per family, as CoreDNS).
    let db = format!("db.{zone}");
    assert_eq!(
        rendered(&udp(addr, &db, RecordType::AAAA).answers),
        [
            format!("{db} 5 IN AAAA fd00:10:244::2"),
            format!("{db} 5 IN AAAA fd00:10:244::3")
        ]
    );
    assert_eq!(
        rendered(&udp(addr, &db, RecordType::A).answers),
        [
            format!("{db} 5 IN A 10.244.0.2"),
            format!("{db} 5 IN A 10.244.0.3")
        ]
    );
    let db0 = format!("db-0.{db}");
    assert_eq!(
        rendered(&udp(addr, &db0, RecordType::AAAA).answers),
        [format!("{db0} 5 IN AAAA fd00:10:244::2")]
    );
    assert_eq!(
        rendered(&udp(addr, &db0, RecordType::A).answers),
        [format!("{db0} 5 IN A 10.244.0.2")]
    );
    let db1_v6 = format!("fd00-10-244--3.{db}");
    assert_eq!(
        rendered(&udp(addr, &db1_v6, RecordType::AAAA).answers),
        [format!("{db1_v6} 5 IN AAAA fd00:10:244::3")]
    );
    let pg = udp(addr, &format!("_pg._tcp.{db}"), RecordType::SRV);
    assert_eq!(
        rendered(&pg.answers),
        [
            format!("_pg._tcp.{db} 5 IN SRV 0 100 5432 10-244-0-3.{db}"),
            format!("_pg._tcp.{db} 5 IN SRV 0 100 5432 db-0.{db}"),
            format!("_pg._tcp.{db} 5 IN SRV 0 100 5432 fd00-10-244--3.{db}"),
        ]
    );
    let ptr_db0 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        rendered(&udp(addr, ptr_db0, RecordType::PTR).answers),
        [format!("{ptr_db0} 5 IN PTR {db0}")]
    );

    // Pod names in both families; an unused address of a cluster range is NXDOMAIN with the
    // ip6.arpa SOA.
    let pod6 = "fd00-10-244--2.default.pod.cluster.local.";
    assert_eq!(
        rendered(&udp(addr, pod6, RecordType::AAAA).answers),
        [format!("{pod6} 5 IN AAAA fd00:10:244::2")]
    );
    let unused = "9.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.";
    let missing = udp(addr, unused, RecordType::PTR);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        missing
            .authorities
            .iter()
            .any(|r| r.name.to_string() == "ip6.arpa."),
        "{:?}",
        missing.authorities
    );
}

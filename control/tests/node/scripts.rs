//! Small Python programs the tests run inside pod namespaces (python3 is on every machine the
//! tests run on; the pods have no other userland).

/// A server in a pod: TCP (line echo, any number of connections) and UDP echo on `port`,
/// answering `<line> from <client ip>`.
pub const ECHO_SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
def serve(conn, peer):
    f = conn.makefile("rwb", buffering=0)
    for line in f:
        f.write(line.rstrip(b"\n") + b" from " + peer[0].encode() + b"\n")
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data + b" from " + peer[0].encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
tcp()
"#;

/// TCP client: connects to argv[1]:argv[2], sends argv[3], prints the answer.
pub const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(sys.argv[3].encode() + b"\n")
print(s.makefile().readline().strip())
"#;

/// UDP client: sends argv[3] to argv[1]:argv[2] (retrying), prints the answer.
pub const UDP_CLIENT: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.5)
for _ in range(6):
    u.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
    try:
        print(u.recvfrom(2048)[0].decode()); break
    except socket.timeout:
        pass
"#;

/// Turns TX checksum offload off on argv[1] (what `ethtool -K IF tx off` does), for the peer
/// of an AF_XDP port: AF_XDP carries no "checksum partial" mark.
pub const TX_CSUM_OFF: &str = r#"
import array, fcntl, socket, struct, sys
value = array.array("I", [0x17, 0])  # ETHTOOL_STXCSUM, off
request = struct.pack("16sP16x", sys.argv[1].encode(), value.buffer_info()[0])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(sock.fileno(), 0x8946, request)  # SIOCETHTOOL
"#;

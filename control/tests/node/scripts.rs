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

/// Slowloris and real clients against one HTTP listener. argv[1] is JSON: `host`, `port`,
/// `path`, `trickle` (connections that send a request head one byte every 0.9 s), `gets`
/// (real GETs, one every 0.5 s once the trickle runs), optional `headers` (lines the real
/// GETs add) and `ca` (speak TLS, trusting that CA file). Prints JSON: how many real GETs
/// got a whole answer within `within` seconds, their status codes, and how many trickling
/// connections the server still held open at the end.
pub const SLOWLORIS: &str = r#"
import json, socket, ssl, sys, threading, time
cfg = json.loads(sys.argv[1])
host, port, path = cfg["host"], cfg["port"], cfg["path"]
within = cfg.get("within", 1.0)
ctx = ssl.create_default_context(cafile=cfg["ca"]) if cfg.get("ca") else None
stop = threading.Event()
open_count = [0]
lock = threading.Lock()
def trickle():
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError:
        return
    with lock: open_count[0] += 1
    # TLS: the start of a ClientHello record that never completes; HTTP: a head that never ends.
    data = b"\x16\x03\x01\x02\x00" + b"\x00" * 4096 if ctx else ("GET %s HTTP/1.1\r\nHost: x\r\nX-Trickle: " % path).encode() + b"a" * 100000
    try:
        for b in data:
            if stop.is_set():
                break
            s.send(bytes([b]))
            stop.wait(0.9)
    except OSError:
        with lock: open_count[0] -= 1
        return
    with lock: open_count[0] -= 1
    s.close()
threads = [threading.Thread(target=trickle, daemon=True) for _ in range(cfg["trickle"])]
for t in threads: t.start()
time.sleep(2)
def get():
    start = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=within)
        if ctx:
            s = ctx.wrap_socket(s, server_hostname=host)
        s.settimeout(max(0.01, within - (time.monotonic() - start)))
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n" % (path, host, cfg.get("headers", ""))).encode())
        data = b""
        while True:
            s.settimeout(max(0.01, within - (time.monotonic() - start)))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if time.monotonic() - start > within:
            return None
        return int(data.split(b" ")[1])
    except (OSError, ValueError, IndexError):
        return None
statuses = []
for _ in range(cfg["gets"]):
    statuses.append(get())
    time.sleep(0.5)
answered = sum(1 for s in statuses if s is not None)
with lock: still_open = open_count[0]
stop.set()
print(json.dumps({"answered": answered, "of": len(statuses), "statuses": statuses, "trickling_open": still_open}), flush=True)
"#;

/// Opens argv[3] idle TCP connections to argv[1]:argv[2] (raising its descriptor limit),
/// prints how many connected, then holds them until stdin closes.
pub const IDLE_FLOOD: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(n):
    try:
        held.append(socket.create_connection((host, port), timeout=2))
    except OSError:
        pass
print(len(held), flush=True)
sys.stdin.read()
"#;

/// Freezes thread argv[1] of another process with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT:
/// only that thread stops), prints "stopped", and lets it go when stdin closes.
pub const FREEZE_THREAD: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH, WALL = 0x4206, 0x4207, 17, 0x40000000
tid = int(sys.argv[1])
for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
    if libc.ptrace(request, tid, None, None) != 0:
        sys.exit("ptrace %d: %s" % (request, os.strerror(ctypes.get_errno())))
os.waitpid(tid, WALL)
print("stopped", flush=True)
sys.stdin.read()
libc.ptrace(PTRACE_DETACH, tid, None, None)
"#;

/// One GET: argv[1] is the URL, argv[2] (optional) a bearer token. Prints the status and the
/// body; the whole answer must come within argv[3] seconds (default 1).
pub const ONE_GET: &str = r#"
import sys, urllib.request, urllib.error
url = sys.argv[1]
token = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
within = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
try:
    r = urllib.request.urlopen(request, timeout=within)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"#;

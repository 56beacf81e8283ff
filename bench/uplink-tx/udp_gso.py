#!/usr/bin/env python3
"""Uplink TX candidate (issue 11 item 4): VXLAN-shaped datagrams through a kernel UDP socket,
with UDP_SEGMENT (one sendmsg per ~64 KB, the kernel cuts it) and UDP_GRO on the receiving
socket, beside the same socket without GSO (one send per segment), veth to veth between two
throw-away namespaces (fpu-a, fpu-b). Needs root. Prints Gbit/s and CPU seconds per GB received
(user + system time of the sending and the receiving process, softirq work done in their
context included; the machine is shared, so its whole busy time would count others' work).

Each datagram is what the node's encap makes: VXLAN header, inner Ethernet/IPv4/TCP with
timestamps, 1398 payload bytes (outer IPv4 1500). The payload is written once; the user-space
cost of building segments (copy + TCP checksum, the same in every candidate) is not in these
figures: they are the kernel's cost of carrying the bytes.

usage: udp_gso.py [--seconds S] [--cpu N]
"""
import argparse
import os
import socket
import subprocess
import sys
import time

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SEG = 8 + 14 + 20 + 32 + 1398  # VXLAN + inner headers + MSS: outer IPv4 1500
PER_SEND = 44  # segments per UDP_SEGMENT send: 64,768 bytes
PORT = 4789
NS_A, NS_B = "fpu-a", "fpu-b"
ADDR_A, ADDR_B = "10.250.0.1", "10.250.0.2"


def sh(*args):
    subprocess.run(args, check=True)


def setup():
    cleanup()
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    sh("ip", "-n", NS_A, "link", "add", "fpu0", "type", "veth", "peer", "name", "fpu1", "netns", NS_B)
    sh("ip", "-n", NS_A, "addr", "add", ADDR_A + "/24", "dev", "fpu0")
    sh("ip", "-n", NS_B, "addr", "add", ADDR_B + "/24", "dev", "fpu1")
    for ns, dev in ((NS_A, "fpu0"), (NS_B, "fpu1")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def cleanup():
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def receiver(seconds, gro):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if gro:
        s.setsockopt(SOL_UDP, UDP_GRO, 1)
    s.bind((ADDR_B, PORT))
    s.settimeout(1.0)
    buf = bytearray(65536)
    total = 0
    calls = 0
    end = time.monotonic() + seconds + 2
    while time.monotonic() < end:
        try:
            n = s.recv_into(buf)
        except socket.timeout:
            if total:
                break
            continue
        total += n
        calls += 1
    print(f"{total} {calls}")


def sender(seconds, gso):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.connect((ADDR_B, PORT))
    seg = bytearray(SEG)
    seg[0] = 0x08
    if gso:
        s.setsockopt(SOL_UDP, UDP_SEGMENT, SEG)
        msg = bytes(seg) * PER_SEND
    else:
        msg = bytes(seg)
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        for _ in range(64):
            try:
                sent += s.send(msg)
            except (BlockingIOError, OSError):
                pass
    print(sent)


def spawn(role, seconds, cpu, gso):
    me = os.path.abspath(__file__)
    ns = NS_B if role == "rx" else NS_A
    # taskset and ip netns exec both exec: the pid is the Python process's own.
    return subprocess.Popen(["taskset", "-c", str(cpu), "ip", "netns", "exec", ns, sys.executable,
                             me, "--role", role, "--seconds", str(seconds)]
                            + (["--gso"] if gso else []),
                            stdout=subprocess.PIPE, text=True)


def reap(proc):
    """Waits for `proc`; returns its stdout and CPU seconds (user + system, which includes the
    softirq work the kernel does in its context: veth delivery to the other namespace)."""
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{proc.args} failed: {proc.returncode}")
    return out, usage.ru_utime + usage.ru_stime


def run(label, seconds, cpu, gso):
    rx = spawn("rx", seconds, cpu, gso)
    time.sleep(0.5)
    t0 = time.monotonic()
    tx = spawn("tx", seconds, cpu, gso)
    tx_out, tx_cpu = reap(tx)
    t1 = time.monotonic()
    rx_out, rx_cpu = reap(rx)
    received, calls = (int(x) for x in rx_out.split())
    gb = received / 1e9
    gbit = received * 8 / (t1 - t0) / 1e9
    per_gb = (tx_cpu + rx_cpu) / gb if gb else float("nan")
    print(f"| {label} | {gbit:.2f} | {per_gb:.2f} | {tx_cpu:.2f} / {rx_cpu:.2f} | "
          f"{received / max(calls, 1):.0f} | {int(tx_out) / 1e9:.2f} / {gb:.2f} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=["rx", "tx"])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--cpu", type=int, default=1)
    p.add_argument("--gso", action="store_true")
    a = p.parse_args()
    if a.role == "rx":
        return receiver(a.seconds, a.gso)
    if a.role == "tx":
        return sender(a.seconds, a.gso)
    if os.geteuid() != 0:
        sys.exit("udp_gso.py needs root (network namespaces)")
    setup()
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print("| UDP socket, both ends on one CPU | Gbit/s received | CPU s per GB received "
              "| CPU s sender / receiver | bytes per receive call | GB sent / received |")
        print("|---|--:|--:|--:|--:|--:|")
        run("UDP_SEGMENT (44 x 1474 B per send) -> UDP_GRO", a.seconds, a.cpu, True)
        run("one send per segment -> one recv per segment", a.seconds, a.cpu, False)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()

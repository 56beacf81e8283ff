# The glibc resolver's pattern: A and AAAA for one name sent back to back from one UDP socket
# (different ids), both answers awaited. Run inside a pod: ROUNDS rounds to SERVER; prints
# "answered N slowest_ms" (a round with a lost answer counts as unanswered).
import random, socket, struct, sys, time

server, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

def query(qid, qtype):
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return header + qname + struct.pack("!HH", qtype, 1)

answered, slowest = 0, 0.0
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5.0)
for _ in range(rounds):
    ids = {random.randrange(65536): 1, random.randrange(65536): 28}
    start = time.monotonic()
    for qid, qtype in ids.items():
        sock.sendto(query(qid, qtype), (server, 53))
    pending = set(ids)
    try:
        while pending:
            reply, _ = sock.recvfrom(4096)
            pending.discard(struct.unpack("!H", reply[:2])[0])
    except socket.timeout:
        continue
    answered += 1
    slowest = max(slowest, time.monotonic() - start)
print(f"answered {answered} {slowest * 1000:.1f}")

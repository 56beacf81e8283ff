#!/bin/bash
# 1 GiB of random bytes store-fe -> store-db (pod on the other node) through the release
# testbed (udp-socket uplink), SHA-256 at both ends. $1 = io, $2 = ferroplane binary.
set -u
io=$1; bin=$2; cd /work/wt/bulk
tb="target/debug/testbed --prefix fpbs"
$tb down >/dev/null 2>&1
$tb up --io $io --ferroplane $bin > /tmp/fpbs-up.log 2>&1 || { echo up failed; tail -5 /tmp/fpbs-up.log; $tb down >/dev/null 2>&1; exit 1; }
ip=$($tb status -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([p["ip"] for p in d["pods"] if p["name"]=="store-db"][0])')
head -c 1073741824 /dev/urandom > /tmp/fpbs-data
want=$(sha256sum < /tmp/fpbs-data | cut -d' ' -f1)
( $tb exec store-db -- sh -c "timeout 60 /usr/bin/python3 -c 'import socket,hashlib,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"0.0.0.0\",5399)); s.listen(1)
c,_=s.accept(); h=hashlib.sha256(); n=0
while True:
    b=c.recv(1<<20)
    if not b: break
    h.update(b); n+=len(b)
print(n, h.hexdigest())'" > /tmp/fpbs-got 2>&1 ) &
sleep 2
start=$(date +%s.%N)
$tb exec store-fe -- sh -c "timeout 60 /usr/bin/python3 -c 'import socket,sys
s=socket.create_connection((\"$ip\",5399)); f=open(\"/tmp/fpbs-data\",\"rb\")
while True:
    b=f.read(1<<20)
    if not b: break
    s.sendall(b)
s.close()'"
wait
end=$(date +%s.%N)
got=$(cat /tmp/fpbs-got)
echo "io=$io sent 1073741824 $want got $got seconds $(echo "$end - $start" | bc)"
$tb down >/dev/null 2>&1
rm -f /tmp/fpbs-data /tmp/fpbs-got

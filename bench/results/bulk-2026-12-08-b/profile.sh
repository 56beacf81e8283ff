#!/bin/bash
# perf record -g (system-wide) of one iperf3 stream pod -> pod on the other node through the
# testbed's demo cluster (TAP pods, udp-socket uplink), release ferroplane. $1 = output dir.
set -u
out=$1; cd /work/wt/bulk
tb="target/debug/testbed --prefix fpbk"
$tb down >/dev/null 2>&1
$tb up --io tap --ferroplane target/release/ferroplane > $out/profile-up.log 2>&1 || { echo up failed; tail $out/profile-up.log; $tb down; exit 1; }
ip=$($tb status -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([p["ip"] for p in d["pods"] if p["name"]=="store-db"][0])')
$tb exec store-db -- iperf3 -s -D -p 5299 -1
sleep 1
uptime > $out/profile-uptime.txt
perf record -a -g -o /tmp/fpbk-perf.data -- sleep 8 > /dev/null 2>&1 &
perf_pid=$!
$tb exec store-fe -- iperf3 -c $ip -p 5299 -t 10 > $out/profile-iperf3.txt 2>&1
wait $perf_pid
uptime >> $out/profile-uptime.txt
$tb down > /dev/null 2>&1
perf report -i /tmp/fpbk-perf.data --no-children --sort sym --stdio 2>/dev/null | grep -v "^$" | grep "%" | head -60 > $out/perf-self.txt
perf report -i /tmp/fpbk-perf.data --no-children --sort comm --stdio 2>/dev/null | grep "%" | head -20 > $out/perf-comm.txt
perf report -i /tmp/fpbk-perf.data --children --sort sym --stdio -g none 2>/dev/null | grep "%" | head -80 > $out/perf-children.txt

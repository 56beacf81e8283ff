#!/bin/bash
# Alternating compare --testbed --quick runs: main 0fd2d4b's release build, this branch's
# raw uplink, this branch's udp-socket uplink. $1 = io (tap | af-packet), $2 = rounds.
set -u
io=$1; rounds=$2; shift 2
out=/work/wt/tunnel/bench/results/bulk-2026-12-08-tunnel
cd /work/wt/tunnel
for r in $(seq 1 $rounds); do
  for variant in "$@"; do
    dir=$out/$io-$variant-$r
    mkdir -p $dir
    echo "== $io $variant round $r start $(date -u +%T) $(uptime)" | tee -a $out/runs.log
    case $variant in
      main) bin=/work/main/target/release/compare; env=();;
      raw) bin=target/release/compare; env=(FERROPLANE_TESTBED_UPLINK_VXLAN=raw);;
      udp) bin=target/release/compare; env=(FERROPLANE_TESTBED_UPLINK_VXLAN=udp-socket);;
    esac
    env "${env[@]}" timeout 900 $bin --testbed --quick --io $io --out-dir $dir > $dir/stdout.txt 2>&1
    echo "== $io $variant round $r end $(date -u +%T) rc=$? $(uptime)" | tee -a $out/runs.log
  done
done

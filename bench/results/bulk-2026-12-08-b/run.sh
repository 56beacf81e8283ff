#!/bin/bash
# compare --testbed --quick, rounds alternating TAP and AF_PACKET pods (udp-socket uplink, the
# testbed default), release build of branch bulk. Each run measures ferroplane and the kernel
# path side by side. $1 = rounds, then the ios (tap af-packet). Run under flock /tmp/fp-bench.lock.
set -u
bin=${FP_BIN:-target/release/ferroplane}; tag=${FP_TAG:-}
rounds=$1; shift
out=/work/wt/bulk/bench/results/bulk-2026-12-08-b
cd /work/wt/bulk
for r in $(seq 1 $rounds); do
  for io in "$@"; do
    dir=$out/$io$tag-$r
    mkdir -p $dir
    echo "== $io$tag ($bin) round $r start $(date -u +%T) $(uptime)" | tee -a $out/runs.log
    timeout 900 target/release/compare --testbed --quick --io $io --ferroplane $bin --out-dir $dir > $dir/stdout.txt 2>&1
    rc=$?
    rm -f $dir/compare-testbed-latency.svg
    echo "== $io$tag ($bin) round $r end $(date -u +%T) rc=$rc $(uptime)" | tee -a $out/runs.log
  done
done

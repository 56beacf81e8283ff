#!/usr/bin/env bash
# The ferroplane demo: a two-node cluster in network namespaces (the testbed), every node
# running the real `ferroplane run`, with the seed talk's store app; then the talk's "life of
# a packet" cases, each shown by a real connection (`testbed probe`) and by the pipeline's own
# account of it (`ferroplane trace`). Leaves the cluster up to explore.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --locked -p control -p testbed
BIN="$PWD/target/release"
T="$BIN/testbed"
F="$BIN/ferroplane"
export FERROPLANE_BIN="$F"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

step "A cluster: underlay, router, internet host 203.0.113.10, two nodes running ferroplane, the store app"
"$T" down >/dev/null 2>&1 || true
run "$T" up --nodes 2
export FERROPLANE_STATE
FERROPLANE_STATE=$("$T" status -o json | json 'd["state_dir"]')

step "What you submit is simple; what you get back has more information"
run "$F" get service store-be -o yaml
step "When you create a service, a controller wakes up"
run "$F" get endpoints store-be
VIP=$("$F" get service store-be -o json | json 'd["spec"]["clusterIP"]')
ip_of() { "$F" get pod "$1" -o json | json 'd["status"]["podIP"]'; }
FE=$(ip_of store-fe)
BE2=$(ip_of store-be-2)
DB=$(ip_of store-db)

step "Pod to pod across nodes: IP-per-pod, no NAT, VXLAN on the underlay"
run "$T" probe store-fe "$BE2:80"

step "Life of a packet: pod to service. New connections spread over the three backends"
for _ in 1 2 3 4 5 6 7 8 9; do "$T" probe store-fe "$VIP:80"; done
run "$F" trace --from default/store-fe --dst "$VIP:80"

step "A VIP answers only on its Service ports"
run "$T" probe store-fe "$VIP:22" --timeout 1s || true
run "$F" trace --from default/store-fe --dst "$VIP:22"

step "Life of a packet: pod to internet. The internet host sees the node IP (masquerade)"
run "$T" probe store-fe 203.0.113.10:80

step "Network policy: the seed's policies and the DefaultDeny namespace"
run "$T" apply -f testbed/manifests/demo/30-store-policy.yaml
run "$T" probe store-be-1 "$DB:6379"
run "$T" probe store-fe "$DB:6379" --timeout 1s || true
run "$F" trace --from default/store-fe --dst "$DB:6379"
run "$T" probe store-fe "$VIP:80"
run "$T" probe store-be-1 "$FE:80" --timeout 1s || true

step "L4 LoadBalancer from outside, Cluster and OnlyLocal (pipeline traces; the cloud LB namespace is not built yet)"
run "$F" apply -f control/tests/seed/service-store-be-lb.yaml >/dev/null
LB=$("$F" get service store-be -o json | json 'd["status"]["loadBalancer"]["ingress"][0]["ip"]')
run "$F" trace --src 203.0.113.10:5555 --node node-1 --dst "$LB:443"
run "$F" apply -f control/tests/seed/service-store-be-onlylocal.yaml >/dev/null
run "$F" trace --src 203.0.113.10:5555 --node node-1 --dst "$LB:443"
run "$F" apply -f testbed/manifests/demo/20-store-be-service.yaml >/dev/null

cat <<MSG

The cluster is up. Explore it:
  export FERROPLANE_STATE=$FERROPLANE_STATE
  $T status
  $T probe store-fe $VIP:80 -o json
  $F get svc,pods,ep -o wide
  $F trace --from default/store-fe --dst $VIP:80 -o json
  $F stats --node-name node-1          # per-worker counters, drops by reason
  $F conntrack list --node-name node-1
  $T down                              # remove everything
MSG

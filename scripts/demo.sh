#!/usr/bin/env bash
# The ferroplane demo: the seed talk's store app on a two-node cluster, applied to the embedded
# API server, then each "life of a packet" of the talk run through the real pipeline code of
# every node it crosses (`ferroplane trace`). Leaves the cluster state in place to explore.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --locked -p control
F="$PWD/target/release/ferroplane"
STATE="${FERROPLANE_DEMO_STATE:-/var/lib/ferroplane-demo}"
export FERROPLANE_STATE="$STATE"
rm -rf "$STATE"
mkdir -p "$STATE"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A cluster: two nodes, the store app (fe, be x3, db) spread over them"
run "$F" init
run "$F" apply -f testbed/manifests/demo/00-nodes.yaml
run "$F" apply -f testbed/manifests/demo/10-store-app.yaml
run "$F" get nodes -o wide
run "$F" get pods -o wide

step "What you submit is simple; what you get back has more information"
run "$F" apply -f testbed/manifests/demo/20-store-be-service.yaml
step "When you create a service, a controller wakes up"
run "$F" get endpoints store-be
VIP=$("$F" get service store-be -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')
FE=$("$F" get pod store-fe -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')
DB=$("$F" get pod store-db -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')

step "Life of a packet: pod to service (DNAT to one backend, VXLAN to its node)"
run "$F" trace --from default/store-fe --dst "$VIP:80"
step "A VIP answers only on its Service ports"
run "$F" trace --from default/store-fe --dst "$VIP:22"
step "Life of a packet: pod to internet (masquerade to the node IP)"
run "$F" trace --from default/store-fe --dst 203.0.113.10:443

step "L4: Service type=LoadBalancer (the seed's manifest), reached from outside"
run "$F" apply -f control/tests/seed/service-store-be-lb.yaml
LB=$("$F" get service store-be -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["loadBalancer"]["ingress"][0]["ip"])')
run "$F" trace --src 203.0.113.10:5555 --node node-1 --dst "$LB:443"
step "OnlyLocal: only node-local backends, client IP kept (node-1 has one be, node-2 two)"
run "$F" apply -f control/tests/seed/service-store-be-onlylocal.yaml
run "$F" trace --src 203.0.113.10:5555 --node node-1 --dst "$LB:443"

step "Network policy: the seed's policies and DefaultDeny (store-be back to its ClusterIP form)"
run "$F" apply -f testbed/manifests/demo/20-store-be-service.yaml >/dev/null
run "$F" apply -f testbed/manifests/demo/30-store-policy.yaml
run "$F" trace --from default/store-be-1 --dst "$DB:6379"
run "$F" trace --from default/store-fe --dst "$DB:6379"
run "$F" trace --from default/store-fe --dst "$VIP:80"
run "$F" trace --from default/store-be-1 --dst "$FE:80"

cat <<MSG

The cluster state is in $STATE. Explore it:
  export FERROPLANE_STATE=$STATE
  $F get svc,pods,ep -o wide
  $F trace --from default/store-fe --dst $VIP:80 -o json
  $F apply -f <manifest>      # change it, then trace again
MSG

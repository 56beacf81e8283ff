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

step "A dual-stack cluster: underlay, router, internet host 203.0.113.10 (and 2001:db8:203::10), two nodes running ferroplane, the store app"
"$T" down >/dev/null 2>&1 || true
run "$T" up --nodes 2 --ip-family dual
export FERROPLANE_STATE
FERROPLANE_STATE=$("$T" status -o json | json 'd["state_dir"]')
PREFIX=${TESTBED_PREFIX:-fptb}

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

step "Dual-stack: store-be asked for PreferDualStack and got an IPv4 and an IPv6 ClusterIP; both answer"
VIP6=$("$F" get service store-be -o json | json 'd["spec"]["clusterIPs"][1]')
run "$F" get service store-be -o json | json '"clusterIPs", d["spec"]["clusterIPs"], "ipFamilies", d["spec"]["ipFamilies"]'
run "$T" probe store-fe "$VIP:80"
run "$T" probe store-fe "[$VIP6]:80"
run "$T" exec store-fe -- dig +short AAAA store-be.default.svc.cluster.local
run "$F" trace --from default/store-fe --dst "[$VIP6]:80"

step "A VIP answers only on its Service ports"
run "$T" probe store-fe "$VIP:22" --timeout 1s || true
run "$F" trace --from default/store-fe --dst "$VIP:22"

step "Cluster DNS: two ferroplane dns pods behind kube-dns (10.96.0.10); pods use the kubelet search path"
run "$T" exec store-fe -- cat /etc/resolv.conf
run "$T" exec store-fe -- getent hosts store-be
run "$T" exec store-fe -- dig +short SRV _http._tcp.store-be.default.svc.cluster.local
run "$T" exec store-fe -- dig +short -x "$VIP"

step "Life of a packet: pod to internet. The internet host sees the node IP (masquerade)"
run "$T" probe store-fe 203.0.113.10:80

step "Receiving external traffic: a type=LoadBalancer Service behind the cloud's L4 load balancer"
run "$T" apply -f testbed/manifests/demo/40-store-be-lb.yaml
LB=$("$F" get service store-be-lb -o json | json 'd["status"]["loadBalancer"]["ingress"][0]["ip"]')
sleep 1 # the cloud LB routes an ingress IP once the nodes pass its health check
run ip -n "$PREFIX-cloudlb" route show "$LB"
echo "# externalTrafficPolicy Cluster: any node, any backend; the backend sees a node IP"
for _ in 1 2 3 4 5 6; do "$T" probe internet "$LB:443"; done
run "$F" trace --src 203.0.113.10:5555 --node node-1 --dst "$LB:443"

step "OnlyLocal: the client IP is kept; a node without a ready local backend fails the health check"
run "$T" apply -f testbed/manifests/demo/41-store-be-lb-onlylocal.yaml
sleep 1
for _ in 1 2 3 4; do "$T" probe internet "$LB:443"; done
run "$T" set-ready store-be-1 false
sleep 1
echo "# node-1 (192.168.50.2) has no ready store-be now: the cloud LB sends only to node-2"
run ip -n "$PREFIX-cloudlb" route show "$LB"
for _ in 1 2 3 4; do "$T" probe internet "$LB:443"; done
run "$T" set-ready store-be-1 true

step "Network policy: the seed's policies and the DefaultDeny namespace"
run "$T" apply -f testbed/manifests/demo/30-store-policy.yaml
run "$T" probe store-be-1 "$DB:6379"
run "$T" probe store-fe "$DB:6379" --timeout 1s || true
run "$F" trace --from default/store-fe --dst "$DB:6379"
run "$T" probe store-fe "$VIP:80"
run "$T" probe store-be-1 "$FE:80" --timeout 1s || true

step "Dealing with change: store-fe keeps connecting while node-2's ferroplane restarts and a pod crashes"
LOAD_OUT=$(mktemp)
"$T" load store-fe "$VIP:80" --duration 8s --hold 2 >"$LOAD_OUT" &
LOAD_PID=$!
sleep 2
run "$T" restart-node node-2
sleep 2
run "$T" kill-pod store-be-3
wait "$LOAD_PID"
python3 - "$LOAD_OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['requests']} requests: {r['connected']} answered, {r['refused']} refused, {r['timeout']} timed out")
print("answered by", r["answered_by"])
for h in r["held"]:
    state = f"cut at {h['cut_at_ms']} ms ({h['error']})" if h["cut_at_ms"] else "never cut"
    print(f"long-lived connection to {h['backend']}: {h['requests']} requests, {state}")
PY
rm -f "$LOAD_OUT"

# The operator verbs find each node's admin socket through FERROPLANE_STATE (the nodes publish
# their socket paths there).
T="$T" F="$F" VIP="$VIP" VIP6="$VIP6" LB="$LB" ./scripts/demo-hints.sh

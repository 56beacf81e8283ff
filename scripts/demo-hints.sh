#!/usr/bin/env bash
# Prints what the demo suggests to try next on the cluster it leaves up. Every command here
# is run against a testbed by testbed/tests/scenarios/demo_hints.rs, so keep each on its own
# line, starting with $T or $F (or `export`); a comment may name more commands after "then:".
# Needs: T (testbed binary), F (ferroplane binary), FERROPLANE_STATE, VIP, VIP6 (store-be's
# IPv6 ClusterIP: the demo cluster is dual-stack), LB.
set -euo pipefail
cat <<MSG

The cluster is up. Explore it:
  export FERROPLANE_STATE=$FERROPLANE_STATE
  $T status
  $T probe store-fe $VIP:80 -o json
  $T probe store-fe '[$VIP6]:80' -o json   # the same Service on its IPv6 ClusterIP
  $T probe internet $LB:443            # from the internet host, through the cloud LB
  $T load store-fe $VIP:80 --duration 10s --hold 2 &   # then: $T kill-pod store-be-2,
                                       # $T restart-node node-2, $T set-ready store-be-3 false
  $F get svc,pods,ep -o wide
  $F trace --from default/store-fe --dst $VIP:80 -o json
  $F stats --node-name node-1          # per-worker counters, drops by reason
  $F conntrack list --node-name node-1 | head
  $T down                              # remove everything
MSG

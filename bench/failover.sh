#!/usr/bin/env bash
# VIP failover on a flat network, as a client sees it: three raftvip nodes
# and a client in network namespaces; each failure of the active node
# (kill -9, link down, SIGSTOP, partition) repeated ROUNDS times for each
# timing profile; and, behind HAProxy, kill -9 of the active node until HAProxy
# serves writes from the new one; and, behind BIRD and gobgpd, kill -9 (link
# cut) until both routers' best path moves. Needs root, iproute2, haproxy,
# bird2 and gobgpd. Prints
# min/median/max.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
ROUNDS=${ROUNDS:-10}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
go test ./test/netns -run '^(TestFailoverBench|TestHAProxyBench|TestBGPBench)$' -count=1 -v -timeout 60m -args -rounds "$ROUNDS" |
	grep -E 'profile|dark|benchmark|HAProxy:|^(ok|FAIL|---)'

#!/usr/bin/env bash
# A three-node cluster of each timing profile in network namespaces under
# write load (a PUT through the VIP every 10 ms) for SOAK with no fault:
# prints the elections, the times an active node let go of the VIP and the
# failed writes per profile. Needs root and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
SOAK=${SOAK:-30m}
PROFILES=${PROFILES:-default,fast}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
go test ./test/netns -run '^TestSoak$' -count=1 -v -timeout 4h -args -soak "$SOAK" -profiles "$PROFILES" |
	grep -E 'elections|soak under|^(ok|FAIL|---)'

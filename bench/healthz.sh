#!/usr/bin/env bash
# /healthz/active requests/s on an active node (wrk, 32 connections, against
# one agent on loopback, on the plain health listener load balancers use),
# then the write rate of a three-node cluster with and without 1,000 health
# checks a second (TestHealthLoad), each phase DURATION long, COUNT times.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
DURATION=${DURATION:-10s}
COUNT=${COUNT:-3}
if ! command -v wrk >/dev/null; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
go build -o bin/raftvip ./cmd/raftvip
dir=$(mktemp -d)
./bin/raftvip agent --data-dir "$dir/d" --consensus-addr 127.0.0.1:19093 --api-addr 127.0.0.1:19092 --health-addr 127.0.0.1:19094 --bootstrap --log-level warn >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for i in $(seq 100); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19094/healthz/active || true)" = 200 ] && break
	sleep 0.1
done
for i in $(seq "$COUNT"); do
	wrk -t1 -c32 -d"$DURATION" http://127.0.0.1:19094/healthz/active | grep -E 'Requests/sec|Latency'
done
go test ./cmd/raftvip -run '^TestHealthLoad$' -count=1 -v -timeout 30m -args -load-duration "$DURATION" -load-phases "$((COUNT * 2 + 1))" |
	grep -E 'requests/s|writes/s|^(ok|FAIL|---)'

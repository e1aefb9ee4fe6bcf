#!/usr/bin/env bash
# Write throughput and latency of a three-node cluster on this machine
# (256-byte objects, 1/16/64/256 concurrent writers against the active node),
# side by side with the heartbeat fast path hashicorp/raft offers and raftvip
# declines (hashicorp/raft issue #695), and with the API in plain HTTP instead
# of TLS (its default), so that the cost of each is measured in the same run,
# alternating. Prints benchstat tables: medians over COUNT runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
COUNT=${COUNT:-5}
OPS=${OPS:-3000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
go test -c -o "$out/api.test" ./api
for i in $(seq "$COUNT"); do
	"$out/api.test" -test.run '^$' -test.bench BenchmarkWrites -test.benchtime "${OPS}x" >>"$out/declined.txt"
	RAFTVIP_HEARTBEAT_FAST_PATH=1 "$out/api.test" -test.run '^$' -test.bench BenchmarkWrites -test.benchtime "${OPS}x" >>"$out/fastpath.txt"
	RAFTVIP_TEST_API_PLAIN=1 "$out/api.test" -test.run '^$' -test.bench BenchmarkWrites -test.benchtime "${OPS}x" >>"$out/plain.txt"
done
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"
$benchstat "$out/declined.txt"
echo
echo "== fast path declined (raftvip) vs taken (hashicorp/raft default)"
$benchstat declined="$out/declined.txt" fastpath="$out/fastpath.txt"
echo
echo "== API in TLS (default) vs plain HTTP (--api-plain)"
$benchstat plain="$out/plain.txt" tls="$out/declined.txt"

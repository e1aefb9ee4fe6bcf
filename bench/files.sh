#!/usr/bin/env bash
# Files into a three-node cluster of agent processes on this machine: the
# disk's own sequential write rate (dd with fdatasync), the upload rate of
# COUNT generated files of SIZE bytes (each byte written by three nodes on
# one disk), each node's peak RSS, a 4th node fetching everything, and the
# snapshot time with and without the files.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
SIZE=${SIZE:-1073741824}
COUNT=${COUNT:-2}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "disk: $(dd if=/dev/zero of="$tmp/dd" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1)"
rm -f "$tmp/dd"
go test ./cmd/raftvip -run '^TestFileReplication$' -count=1 -v -timeout 60m -args -file-size "$SIZE" -file-count "$COUNT" -file-report |
	grep -E 'upload|snapshot|^(ok|FAIL|---)'

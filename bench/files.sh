#!/usr/bin/env bash
# Files into a three-node cluster of agent processes on this machine: the
# disk's own sequential write rate (dd with fdatasync, median of three), the
# upload rate of COUNT generated files of SIZE bytes (each byte written by
# three nodes on one disk; the first upload goes through the CLI and a
# passive node and is not timed, each next one starts when every node holds
# the one before), each node's peak RSS, a 4th node fetching everything,
# and the snapshot time with and without the files.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
SIZE=${SIZE:-1073741824}
COUNT=${COUNT:-4}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dds=()
for i in 1 2 3; do
	line=$(dd if=/dev/zero of="$tmp/dd" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1)
	rm -f "$tmp/dd"
	echo "disk: $line"
	# bytes / seconds, from "N bytes (...) copied, S s, R MB/s"
	dds+=("$(echo "$line" | awk '{for (i = 1; i <= NF; i++) if ($i == "s,") { printf "%.1f", $1 / $(i-1) / 1048576 }}')")
done
disk=$(printf '%s\n' "${dds[@]}" | sort -n | sed -n 2p)
echo "disk: median ${disk} MiB/s"
go test ./cmd/raftvip -run '^TestFileReplication$' -count=1 -v -timeout 60m -args -file-size "$SIZE" -file-count "$COUNT" -file-report |
	grep -E 'upload|snapshot|^(ok|FAIL|---)' | tee "$tmp/out"
up=$(sed -n 's/.*files of [0-9]* MiB: upload \([0-9.]*\) MiB\/s (median.*/\1/p' "$tmp/out")
if [ -n "$up" ]; then
	echo "upload: median ${up} MiB/s = $(awk -v u="$up" -v d="$disk" 'BEGIN { printf "%.0f%%", 100 * u / d }') of the disk's own rate (goal: 40%)"
fi

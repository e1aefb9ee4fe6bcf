#!/usr/bin/env bash
# Files into a three-node cluster of agent processes on this machine, in
# one run: the disk's own sequential write rate (dd writing 1 GiB with
# fdatasync into fresh pages, as an upload writes, just before each timed
# upload; also three times before the cluster starts, and once into pages
# just freed, for comparison: on this VM that one is about twice as fast,
# see diskRate in cmd/raftvip/files_e2e_test.go), the upload rate of
# COUNT generated files of SIZE bytes (each byte stored by three nodes on one
# disk; the first upload goes through the CLI and a passive node and is not
# timed, each next one starts when every node holds the one before) and its
# ratio to the disk's rate, each node's peak RSS, a 4th node fetching
# everything, and the snapshot time with and without the files.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
SIZE=${SIZE:-1073741824}
COUNT=${COUNT:-6}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
go test ./cmd/raftvip -run '^TestFileReplication$' -count=1 -v -timeout 60m -args -file-size "$SIZE" -file-count "$COUNT" -file-report |
	grep -E 'upload|disk|dd |snapshot|PUT |never|^(ok|FAIL|---)'

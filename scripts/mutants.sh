#!/usr/bin/env bash
# Shows that the fault suite catches deliberately broken builds: each patch
# in test/fault/mutants is applied to a scratch copy of HEAD, built, and the
# short fault run (make test's seeds) is run against that binary. The script
# fails if any mutant passes. Needs root, as the suite does.
# MUTANTS="name ..." runs only those; each run's log is kept in
# ${TMPDIR:-/tmp}/raftvip-mutants/NAME.log.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
scratch=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$scratch/src" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
git worktree add --detach "$scratch/src" HEAD >/dev/null
logs=${TMPDIR:-/tmp}/raftvip-mutants
mkdir -p "$logs"
status=0
for patch in test/fault/mutants/*.patch; do
	name=$(basename "$patch" .patch)
	if [ -n "${MUTANTS:-}" ] && [[ " $MUTANTS " != *" $name "* ]]; then
		continue
	fi
	git -C "$scratch/src" checkout -q -- .
	git -C "$scratch/src" apply "$top/$patch"
	(cd "$scratch/src" && go build -o "$scratch/raftvip-$name" ./cmd/raftvip) || { echo "mutant $name: does not build"; status=1; continue; }
	start=$(date +%s)
	if RAFTVIP_BINARY="$scratch/raftvip-$name" go test -count=1 -failfast -timeout 20m ./test/fault -run TestFaults ${FAULT_ARGS:+-args $FAULT_ARGS} >"$logs/$name.log" 2>&1; then
		echo "mutant $name: NOT caught (the suite passed)"
		status=1
	else
		echo "mutant $name: caught in $(( $(date +%s) - start )) s:"
		grep -E '^\s+(objects|stale reads|job log|files|VIP owners|ARP|during the run|the cluster|no write|state hash)' "$logs/$name.log" | head -5
		grep -E '^\s+[a-z_]+\.go:[0-9]+: ' "$logs/$name.log" | grep -v 'seed [0-9]* failed' | head -3
		grep -E 'seed [0-9]+ failed' "$logs/$name.log" | sed 's/; history.*//' | head -1
	fi
done
exit $status

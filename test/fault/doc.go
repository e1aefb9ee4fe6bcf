// Package fault is raftvip's fault suite: it proves the invariants of
// ../../../shared/DESIGN.md (one owner, nothing acknowledged lost,
// linearizable reads, whole files or nothing) against a recorded history
// instead of asserting them in hand-picked scenarios.
//
// Each run builds a cluster of raftvip agents in network namespaces (three
// voters and a spare, one voter's data directory on a loop-device file system
// that can be throttled), drives a workload of concurrent clients through the
// VIP and through each node directly, and lets a nemesis driven by a seed
// inject overlapping faults: kill -9, SIGSTOP/SIGCONT, restarts, partitions
// (one node against the rest, one-way, a bridge node that sees both sides),
// isolating the active node, a slow disk (blkio write-IOPS throttle on the
// loop device) and enroll/remove of the spare. Then it heals everything and
// checks:
//
//   - every object key's history is linearizable (porcupine, a key/value
//     model with create, put, compare-and-set on the revision, merge patch,
//     delete, get and list), with operations whose outcome is unknown (504
//     outcome_unknown, a timeout, a broken connection) allowed to take effect
//     at any time or never, and refusals allowed no effect at all;
//   - stale reads return only values that some write not refused produced;
//   - no acknowledged job-log append is missing or moved, no refused one is
//     present;
//   - every acknowledged file is there byte for byte; a cut-off or
//     wrong-digest upload is never visible; no download is partial;
//   - the state hash is the same on every node;
//   - at no instant two owners of the VIP: answers that claim the active role
//     (200 on /healthz/active from each node, active answers through the VIP,
//     ARP replies for the VIP) are ordered by term and never come from two
//     nodes in one term, and no ARP request is answered by two MACs.
//
// A failing run prints its seed and writes the history, a porcupine
// visualisation per key, the nemesis log and every agent's output to one
// folder (-fault.out, default $TMPDIR/raftvip-fault/SEED).
//
// # Usage
//
//	go test ./test/fault                                 # the fixed seeds (make test)
//	go test ./test/fault -args -fault.seeds 7 -fault.run 2m  # replay a seed
//	make torture DURATION=2h                            # new seeds until 2h are up
//
// It needs root, iproute2, losetup and mkfs.ext4; under CI=true a missing
// prerequisite fails the test with what to install. RAFTVIP_BINARY runs a
// prebuilt binary instead of building cmd/raftvip (scripts/mutants.sh uses
// it to show that deliberately broken builds fail the suite).
package fault

package consensus

import "errors"

// Sentinel errors. Raft's own errors are translated to these at the
// package boundary, so callers never import hashicorp/raft.
var (
	// ErrNotLeader means this node is not the leader (or not active) and
	// cannot serve the request itself.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader means the cluster has no leader right now (an election is
	// under way or there is no quorum).
	ErrNoLeader = errors.New("no leader")
	// ErrNotInCluster means this node has not been initialised or joined.
	ErrNotInCluster = errors.New("node is not part of a cluster; run 'raftvip ha init' or join it to one")
	// ErrAlreadyInCluster means the node already belongs to a cluster.
	ErrAlreadyInCluster = errors.New("node already belongs to a cluster")
	// ErrBadToken means a join token is malformed, expired or for another cluster.
	ErrBadToken = errors.New("bad join token")
	// ErrBadTLS means TLS material is unreadable or does not match.
	ErrBadTLS = errors.New("bad TLS material")
	// ErrUnknownMember means no member has that ID or address.
	ErrUnknownMember = errors.New("unknown member")
	// ErrRefused means a membership change was refused (for example removing
	// the active node, or a duplicate node ID).
	ErrRefused = errors.New("refused")
	// ErrTimeout means the cluster did not answer in time.
	ErrTimeout = errors.New("timed out")
	// ErrUnknownOutcome means a change was proposed but this node cannot
	// tell whether it was committed: leadership was lost, or the node shut
	// down, after the command entered the log. It may have been applied,
	// or it may never be; read the state before retrying it.
	ErrUnknownOutcome = errors.New("outcome unknown")
	// ErrShutdown means the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
	// ErrSharedStorage means the data directory is on a network or shared
	// filesystem or block device (NFS, SMB, CephFS, iSCSI, DRBD, ...).
	ErrSharedStorage = errors.New("the data directory is on shared storage")
	// ErrDataDirMode means users other than the owner can enter the data
	// directory.
	ErrDataDirMode = errors.New("the data directory is open to other users")
	// ErrInconsistent means the data directory's files (ha-state.json, the
	// CA, the node certificate) do not describe one node of one cluster.
	ErrInconsistent = errors.New("the data directory's files disagree")
	// ErrDataDirHeld means another agent holds the data directory.
	ErrDataDirHeld = errors.New("the data directory is in use")
)

package announce

import (
	"context"
	"net/netip"
)

// Desired is the state a node wants its Announcer to reach.
type Desired struct {
	// Active is true while the node is the active one.
	Active bool
	// Term is the Raft term in which the node is active; mechanisms that can
	// carry it (BGP) use it to let the newest leader win.
	Term uint64
}

// Announcer makes the cluster's VIPs reach this node while it is active.
//
// Set may be called from one goroutine at a time and returns when the
// change has been made (or failed); it is idempotent, and a Set with the same
// Desired again repeats the announcement (for example after a heal), which
// is how callers ask for a refresh. Announced may be called from any
// goroutine and returns a new slice. Close releases everything and is safe
// to call twice.
type Announcer interface {
	Set(ctx context.Context, d Desired) error
	Announced() []netip.Prefix
	Close() error
}

// ActiveFunc reports whether the node is active at this instant (Raft
// leader with a fresh lease). Announcers call it before every answer they
// give on the network, so it must be cheap and must not block.
type ActiveFunc func() bool

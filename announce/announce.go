package announce

import (
	"context"
	"net/netip"
	"time"
)

// Desired is the state a node wants its Announcer to reach.
type Desired struct {
	// Active is true while the node is the active one.
	Active bool
	// Term is the Raft term in which the node is active; mechanisms that can
	// carry it (BGP) use it to let the newest leader win.
	Term uint64
	// Drain, when not Active and in the future, asks for a make-before-break
	// hand-over: the node no longer claims the VIPs (no ARP or NDP answers,
	// no new announcement) but keeps accepting the traffic that still
	// reaches it (the VIPs stay on the holder, a BGP path stays until the
	// successor's newer one replaces it at the routers) until that instant,
	// when a Set without Drain lets go. The kernel fence ends the drain by
	// itself if the agent cannot.
	Drain time.Time
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

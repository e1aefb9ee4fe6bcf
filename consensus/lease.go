package consensus

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Active is what the node publishes to subscribers whenever it changes:
// whether this node is the active one, in which term, and who leads.
type Active struct {
	Active   bool   `json:"active"`
	Term     uint64 `json:"term"`
	LeaderID string `json:"leader_id"`
	// Heals counts the times a member resumed answering this node's
	// heartbeats after failing to (a healed partition or link); each one is
	// published, so that announcers re-announce the VIP after a heal.
	Heals uint64 `json:"heals"`
	// Drain is set while a node that handed leadership over on purpose
	// (ha transfer, a graceful stop, a readiness hand-over) is not active
	// but its last lease has not run out: until then it keeps accepting the
	// VIP traffic that still reaches it, without claiming the VIP, so that
	// the successor's announcement is made before the old node's is broken
	// and the hand-over loses no request (make-before-break). Zero otherwise.
	Drain time.Time `json:"drain,omitzero"`
}

// runLeadership keeps the active lease: while this node leads, it confirms
// leadership with a quorum round every tick, and the lease runs from the
// start of the last confirmed round. It publishes every change of Active.
func (n *Node) runLeadership(r *raft.Raft) {
	defer n.wg.Done()
	t := n.cfg.Timing
	tick := time.NewTicker(t.ActiveLease / 10)
	defer tick.Stop()
	verifying := make(chan struct{}, 1)
	var barrierTerm atomic.Uint64
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		case <-r.LeaderCh():
		}
		term := r.CurrentTerm()
		if r.State() != raft.Leader {
			n.leaseMu.Lock()
			n.leaseUntil, n.transferring = time.Time{}, false
			n.leaseMu.Unlock()
			n.publish()
			continue
		}
		if barrierTerm.Load() != term {
			// A new leader first applies everything earlier terms committed,
			// so that lease reads see every acknowledged write.
			barrierTerm.Store(term)
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				if err := n.await(r.Barrier(5 * t.Heartbeat)); err != nil {
					n.logger.Warn("barrier after election failed", "term", term, "err", err)
					barrierTerm.CompareAndSwap(term, 0)
					return
				}
				// A new leader must hold every committed file before it
				// may be active: fetch what it lacks from the others.
				if err := n.fetchMissingBlobs(term); err != nil {
					n.logger.Warn("leader lacks committed files; not becoming active", "term", term, "err", err)
					barrierTerm.CompareAndSwap(term, 0)
					return
				}
				// Not becoming active while a ready voter could be.
				if why := n.notReady(); why != "" && !n.cfg.Observer && n.handToReady(why, true) {
					return
				}
				n.leaseMu.Lock()
				n.readyTerm, n.drainUntil = term, time.Time{}
				n.leaseMu.Unlock()
				n.logger.Info("leader ready", "term", term)
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				n.reconcileMembers(rctx, r)
				cancel()
				if n.cfg.Observer {
					n.handOff(r)
				}
			}()
		}
		select {
		case verifying <- struct{}{}:
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer func() { <-verifying }()
				t0 := time.Now()
				if err := n.await(r.VerifyLeader()); err != nil {
					return
				}
				n.leaseMu.Lock()
				if r.CurrentTerm() == term && t0.Add(t.ActiveLease).After(n.leaseUntil) {
					n.leaseUntil = t0.Add(t.ActiveLease)
				}
				n.leaseMu.Unlock()
				n.publish()
			}()
		default:
		}
		n.publish()
	}
}

// watchHeals publishes every member that resumed answering heartbeats.
func (n *Node) watchHeals(obs chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case o := <-obs:
			if h, ok := o.Data.(raft.ResumedHeartbeatObservation); ok {
				n.heals.Add(1)
				n.logger.Info("member answers heartbeats again", "peer", h.PeerID)
				n.publish()
			}
		}
	}
}

// IsActive reports whether this node is the active node right now: Raft
// leader, caught up in its term, not an observer, not handing over, and its
// lease fresh. It is computed at the call, never cached.
func (n *Node) IsActive() bool {
	r := n.r()
	if r == nil || n.cfg.Observer {
		return false
	}
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return !n.transferring && n.readyTerm != 0 && r.State() == raft.Leader &&
		n.readyTerm == r.CurrentTerm() && time.Now().Before(n.leaseUntil)
}

// Transferring reports whether this node is handing leadership over.
func (n *Node) Transferring() bool {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return n.transferring
}

// LeaseRemaining returns how long the active lease has left (0 when not active).
func (n *Node) LeaseRemaining() time.Duration {
	if !n.IsActive() {
		return 0
	}
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	return time.Until(n.leaseUntil)
}

// DrainUntil returns the end of the drain of a deliberate hand-over (see
// Active.Drain), zero when the node is not draining.
func (n *Node) DrainUntil() time.Time {
	if n.IsActive() {
		return time.Time{}
	}
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	if !time.Now().Before(n.drainUntil) {
		return time.Time{}
	}
	return n.drainUntil
}

func (n *Node) current() Active {
	a := Active{Active: n.IsActive(), Heals: n.heals.Load(), Drain: n.DrainUntil()}
	if r := n.r(); r != nil {
		a.Term = r.CurrentTerm()
		_, id := r.LeaderWithID()
		a.LeaderID = string(id)
	}
	return a
}

// Subscribe returns a channel that receives the current Active at once and
// then every change. Only the newest value is kept for a slow reader. The
// channel is closed when the node closes or cancel is called.
func (n *Node) Subscribe() (<-chan Active, func()) {
	ch := make(chan Active, 1)
	n.subMu.Lock()
	n.subs[ch] = struct{}{}
	ch <- n.last
	n.subMu.Unlock()
	return ch, func() {
		n.subMu.Lock()
		defer n.subMu.Unlock()
		if _, ok := n.subs[ch]; ok {
			delete(n.subs, ch)
			close(ch)
		}
	}
}

func (n *Node) publish() {
	n.syncFence() // the kernel first: it must never hold a lease the node has let go
	a := n.current()
	n.subMu.Lock()
	defer n.subMu.Unlock()
	if a == n.last {
		return
	}
	if a.Active != n.last.Active {
		n.logger.Info("active state changed", "node", n.cfg.NodeID, "active", a.Active, "term", a.Term, "leader", a.LeaderID)
	}
	n.last = a
	for ch := range n.subs {
		select {
		case <-ch:
		default:
		}
		ch <- a
	}
}

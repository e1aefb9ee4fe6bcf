package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftvip/raftvip/store"
)

// findServer looks a member up by ID or consensus address.
func (n *Node) findServer(r *raft.Raft, target string) (raft.Server, error) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, translate(err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == target || string(s.Address) == target {
			return s, nil
		}
	}
	return raft.Server{}, fmt.Errorf("%w: %q", ErrUnknownMember, target)
}

// Transfer hands leadership to target (ID or address), or to the most
// caught-up passive node when target is empty. This node stops being active
// before Raft starts the hand-over.
func (n *Node) Transfer(ctx context.Context, target string) (string, error) {
	return n.transfer(ctx, target, false)
}

// transfer is Transfer; with an empty target and readyOnly it hands over
// only to a node whose announcer is ready.
func (n *Node) transfer(ctx context.Context, target string, readyOnly bool) (string, error) {
	r := n.r()
	if r == nil {
		return "", ErrNotInCluster
	}
	if r.State() != raft.Leader {
		return "", ErrNotLeader
	}
	members := n.memberMap()
	var s raft.Server
	var err error
	if target == "" {
		s, err = n.pickSuccessor(ctx, r, readyOnly)
	} else if s, err = n.findServer(r, target); err == nil {
		switch {
		case string(s.ID) == n.cfg.NodeID:
			err = fmt.Errorf("%w: %s is already the leader", ErrRefused, s.ID)
		case members[string(s.ID)].Observer:
			err = fmt.Errorf("%w: %s is an observer and never becomes active", ErrRefused, s.ID)
		case s.Suffrage != raft.Voter:
			err = fmt.Errorf("%w: %s is not a voter", ErrRefused, s.ID)
		}
	}
	if err != nil {
		return "", err
	}
	// Make-before-break: the lease is renewed by one more quorum round,
	// and what is left of it after the hand-over is the drain, during which
	// this node accepts the VIP traffic that still reaches it while the
	// successor takes the VIP over. Other nodes cannot be elected before
	// the lease ends (invariant 1) and the successor knows it takes over
	// from a node that let go, so only the successor's answers and those
	// of the old node to traffic sent before the successor's announcement
	// overlap.
	var drain time.Time
	if n.IsActive() {
		t0 := time.Now()
		if err := n.await(r.VerifyLeader()); err == nil {
			drain = t0.Add(n.cfg.Timing.ActiveLease)
		}
	}
	n.leaseMu.Lock()
	if drain.After(n.leaseUntil) {
		n.leaseUntil = drain
	}
	n.transferring, n.drainUntil = true, drain
	n.leaseMu.Unlock()
	n.publish() // no longer active (draining) before Raft can elect anyone else
	if err := n.await(r.LeadershipTransferToServer(s.ID, s.Address)); err != nil {
		n.leaseMu.Lock()
		n.transferring, n.drainUntil = false, time.Time{}
		n.leaseMu.Unlock()
		n.publish()
		return "", translate(err)
	}
	n.logger.Info("leadership transferred", "to", s.ID)
	return string(s.ID), nil
}

func (n *Node) memberMap() map[string]store.Member {
	out := map[string]store.Member{}
	ms, err := n.Store().Members()
	if err != nil {
		return out
	}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// pickSuccessor chooses the reachable non-observer voter whose announcer is
// ready (only those when readyOnly) with the highest applied index.
func (n *Node) pickSuccessor(ctx context.Context, r *raft.Raft, readyOnly bool) (raft.Server, error) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, translate(err)
	}
	members := n.memberMap()
	var cands []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID && !members[string(s.ID)].Observer {
			cands = append(cands, s)
		}
	}
	sts := n.fetchStatuses(ctx, cands)
	// A node whose announcer can do its job first, then the most caught-up.
	best, bestReady, bestApplied := -1, false, uint64(0)
	for i, st := range sts {
		if st.err != nil {
			continue
		}
		ready := st.status.NotReady == ""
		if readyOnly && !ready {
			continue
		}
		if best < 0 || ready && !bestReady || ready == bestReady && st.status.AppliedIndex > bestApplied {
			best, bestReady, bestApplied = i, ready, st.status.AppliedIndex
		}
	}
	if best < 0 {
		if readyOnly {
			return raft.Server{}, fmt.Errorf("%w: no reachable passive node is ready to take over", ErrRefused)
		}
		return raft.Server{}, fmt.Errorf("%w: no reachable passive node to hand over to", ErrRefused)
	}
	return cands[best], nil
}

// handOff runs on an observer that won an election: it gives leadership to
// the most caught-up passive node, retrying until one can take it.
func (n *Node) handOff(r *raft.Raft) {
	for attempt := 0; attempt < 50; attempt++ {
		if r.State() != raft.Leader {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		to, err := n.Transfer(ctx, "")
		cancel()
		if err == nil {
			n.logger.Info("observer handed leadership over", "to", to)
			return
		}
		n.logger.Warn("observer could not hand leadership over yet", "err", err)
		select {
		case <-n.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

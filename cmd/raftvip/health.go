package main

import (
	"sync/atomic"
	"time"

	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/healthz"
)

// healthSource is the node's health as healthz sees it: consensus status
// plus the agent's own "shutting down" flag.
type healthSource struct {
	node     *consensus.Node
	stopping atomic.Bool
}

// Health reads everything from memory.
func (h *healthSource) Health() healthz.Status {
	st := h.node.Status()
	s := healthz.Status{NodeID: st.ID, Role: st.Role, InCluster: st.State != "unconfigured", Active: st.Active,
		Draining: h.stopping.Load() || h.node.Transferring(), Term: st.Term, LeaderID: st.LeaderID,
		Applied: st.AppliedIndex, Commit: st.CommitIndex,
		LastContact: time.Duration(st.LastContactMs) * time.Millisecond, LeaseRemaining: time.Duration(st.LeaseRemainingMs) * time.Millisecond}
	if st.LastContactMs < 0 {
		s.LastContact = -1
	}
	return s
}

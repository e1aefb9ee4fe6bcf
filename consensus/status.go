package consensus

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftvip/raftvip/store"
)

// NodeStatus is one node's own view of itself, from memory.
type NodeStatus struct {
	ID               string `json:"id"`
	ClusterID        string `json:"cluster_id,omitempty"`
	ConsensusAddr    string `json:"consensus_addr"`
	APIURL           string `json:"api_url"`
	Observer         bool   `json:"observer,omitempty"`
	State            string `json:"state"` // Raft state: Leader, Follower, Candidate, Shutdown, or unconfigured
	Role             string `json:"role"`  // active, passive, observer, leader (not yet active), candidate, unconfigured
	Active           bool   `json:"active"`
	Term             uint64 `json:"term"`
	LeaderID         string `json:"leader_id,omitempty"`
	LeaderAddr       string `json:"leader_addr,omitempty"`
	LastContactMs    int64  `json:"last_contact_ms"` // -1: never; 0 on the leader
	LastLogIndex     uint64 `json:"last_log_index"`
	CommitIndex      uint64 `json:"commit_index"`
	AppliedIndex     uint64 `json:"applied_index"`
	StateHash        string `json:"state_hash"`
	LeaseRemainingMs int64  `json:"lease_remaining_ms"`
	// NotReady says why this node's announcer cannot do its job ("" when
	// it can); a leader that is not ready hands over to a ready voter.
	NotReady string `json:"not_ready,omitempty"`
	// HandedOver is the last time this node gave leadership away because
	// it was not ready.
	HandedOver *HandOver `json:"handed_over,omitempty"`
	// Fence is the kernel's copy of the lease (nil: no fence).
	Fence  *FenceStatus `json:"fence,omitempty"`
	Timing Timing       `json:"timing"`
	// FilesMissing is how many committed files' contents this node does
	// not hold yet (its file lag); reported by FullStatus only.
	FilesMissing int `json:"files_missing"`
	// FilesMissingBytes is their size, and FilesFetchedBytes how much of it
	// copies under way already hold (the fetch's progress).
	FilesMissingBytes int64 `json:"files_missing_bytes"`
	FilesFetchedBytes int64 `json:"files_fetched_bytes"`
	// Announcer is what this node's announcer reports (BGP sessions, what
	// it announces), when the agent set one with SetStatusExtra.
	Announcer any `json:"announcer,omitempty"`
}

// Status returns this node's status.
func (n *Node) Status() NodeStatus {
	st := NodeStatus{ID: n.cfg.NodeID, ConsensusAddr: n.cfg.ConsensusAddr, APIURL: n.cfg.APIURL, Observer: n.cfg.Observer,
		State: "unconfigured", Role: "unconfigured", LastContactMs: -1, Timing: n.cfg.Timing}
	n.mu.Lock()
	st.ClusterID = n.state.HaID
	n.mu.Unlock()
	st.AppliedIndex, st.StateHash = n.Store().StateHash()
	r := n.r()
	if r == nil {
		return st
	}
	rs := r.State()
	st.State = rs.String()
	st.Term = r.CurrentTerm()
	a, id := r.LeaderWithID()
	st.LeaderID, st.LeaderAddr = string(id), string(a)
	st.LastLogIndex = r.LastIndex()
	st.CommitIndex = r.CommitIndex()
	st.Active = n.IsActive()
	st.LeaseRemainingMs = n.LeaseRemaining().Milliseconds()
	st.Fence = n.fenceStatus()
	st.NotReady = n.notReady()
	n.mu.Lock()
	if !n.lastHandOver.At.IsZero() {
		h := n.lastHandOver
		st.HandedOver = &h
	}
	n.mu.Unlock()
	switch {
	case rs == raft.Leader:
		st.LastContactMs = 0
	case !r.LastContact().IsZero():
		st.LastContactMs = time.Since(r.LastContact()).Milliseconds()
	}
	switch {
	case st.Active:
		st.Role = "active"
	case n.cfg.Observer:
		st.Role = "observer"
	case rs == raft.Leader:
		st.Role = "leader"
	case rs == raft.Candidate:
		st.Role = "candidate"
	default:
		st.Role = "passive"
	}
	return st
}

// FullStatus is Status with what the announcer reports (Announcer). It
// costs more than Status: use Status for health checks.
func (n *Node) FullStatus() NodeStatus {
	st := n.Status()
	if lag, err := n.Store().FileLag(); err == nil {
		st.FilesMissing, st.FilesMissingBytes, st.FilesFetchedBytes = lag.Files, lag.Bytes, lag.Fetched
	}
	n.mu.Lock()
	extra := n.statusExtra
	n.mu.Unlock()
	if extra != nil {
		st.Announcer = extra()
	}
	return st
}

// MemberStatus is one member as seen from the node that gathers the
// cluster status.
type MemberStatus struct {
	ID            string      `json:"id"`
	ConsensusAddr string      `json:"consensus_addr"`
	APIURL        string      `json:"api_url,omitempty"`
	Suffrage      string      `json:"suffrage"`
	Observer      bool        `json:"observer,omitempty"`
	Reachable     bool        `json:"reachable"`
	Error         string      `json:"error,omitempty"`
	Lag           uint64      `json:"lag"` // leader's commit index minus this node's applied index
	HashAtCheck   string      `json:"hash_at_check,omitempty"`
	Status        *NodeStatus `json:"status,omitempty"`
}

// ClusterStatus is the whole cluster as one node sees it.
type ClusterStatus struct {
	ClusterID string         `json:"cluster_id"`
	Self      string         `json:"self"`
	LeaderID  string         `json:"leader_id"`
	ActiveID  string         `json:"active_id"`
	Term      uint64         `json:"term"`
	Voters    int            `json:"voters"`
	Quorum    int            `json:"quorum"`
	Members   []MemberStatus `json:"members"`
	// CheckIndex is the index at which state hashes were compared;
	// Consistent is false when two nodes differ there.
	CheckIndex uint64   `json:"check_index"`
	Consistent bool     `json:"consistent"`
	Warnings   []string `json:"warnings"`
}

type fetched struct {
	status *NodeStatus
	err    error
}

// fetchStatuses asks each server for its status in parallel.
func (n *Node) fetchStatuses(ctx context.Context, servers []raft.Server) []fetched {
	out := make([]fetched, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		if string(s.ID) == n.cfg.NodeID {
			st := n.FullStatus()
			out[i] = fetched{status: &st}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st NodeStatus
			err := n.getInternal(ctx, string(s.Address), "/internal/status", &st)
			out[i] = fetched{status: &st, err: err}
		}()
	}
	wg.Wait()
	return out
}

// ClusterStatus gathers every member's status, compares state hashes at a
// common index and says in plain words what needs attention.
func (n *Node) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	r := n.r()
	if r == nil {
		return nil, ErrNotInCluster
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, translate(err)
	}
	servers := f.Configuration().Servers
	members := n.memberMap()
	self := n.Status()
	cs := &ClusterStatus{ClusterID: self.ClusterID, Self: self.ID, LeaderID: self.LeaderID, Term: self.Term, Consistent: true, Warnings: []string{}}
	sts := n.fetchStatuses(ctx, servers)
	var leaderCommit uint64
	for _, st := range sts {
		if st.err == nil && st.status.State == "Leader" && st.status.Term >= cs.Term {
			leaderCommit, cs.LeaderID, cs.Term = st.status.CommitIndex, st.status.ID, st.status.Term
		}
	}
	reachableVoters := 0
	minApplied := uint64(0)
	for i, s := range servers {
		m := members[string(s.ID)]
		ms := MemberStatus{ID: string(s.ID), ConsensusAddr: string(s.Address), APIURL: m.APIURL, Suffrage: s.Suffrage.String(), Observer: m.Observer}
		if s.Suffrage == raft.Voter {
			cs.Voters++
		}
		if err := sts[i].err; err != nil {
			ms.Error = err.Error()
			cs.Warnings = append(cs.Warnings, fmt.Sprintf("node %s (%s) is unreachable: %v", s.ID, s.Address, err))
		} else {
			st := sts[i].status
			ms.Reachable, ms.Status = true, st
			if s.Suffrage == raft.Voter {
				reachableVoters++
			}
			if st.Active {
				cs.ActiveID = st.ID
			}
			if leaderCommit > st.AppliedIndex {
				ms.Lag = leaderCommit - st.AppliedIndex
			}
			if st.FilesMissing > 0 {
				cs.Warnings = append(cs.Warnings, fmt.Sprintf("node %s lacks the contents of %d committed files, %d bytes (fetching them: %d bytes so far)",
					s.ID, st.FilesMissing, st.FilesMissingBytes, st.FilesFetchedBytes))
			}
			if ms.Lag > 1000 {
				cs.Warnings = append(cs.Warnings, fmt.Sprintf("node %s lags %d entries behind the leader", s.ID, ms.Lag))
			}
			if st.NotReady != "" {
				w := fmt.Sprintf("node %s is not ready: %s", s.ID, st.NotReady)
				if st.Active {
					w += "; it stays active only while no ready voter can take over"
				} else {
					w += "; it will not stay active while a ready voter exists"
				}
				cs.Warnings = append(cs.Warnings, w)
			}
			if h := st.HandedOver; h != nil && time.Since(h.At) < 10*time.Minute {
				cs.Warnings = append(cs.Warnings, fmt.Sprintf("node %s handed leadership to %s %v ago because it was not ready: %s",
					s.ID, h.To, time.Since(h.At).Round(time.Second), h.Why))
			}
			if st.LastContactMs > 3*n.cfg.Timing.Heartbeat.Milliseconds() {
				cs.Warnings = append(cs.Warnings, fmt.Sprintf("node %s last heard from the leader %d ms ago", s.ID, st.LastContactMs))
			}
			if minApplied == 0 || st.AppliedIndex < minApplied {
				minApplied = st.AppliedIndex
			}
		}
		cs.Members = append(cs.Members, ms)
	}
	cs.Quorum = cs.Voters/2 + 1
	if cs.Voters%2 == 0 {
		cs.Warnings = append(cs.Warnings, fmt.Sprintf("%d voters: an even number tolerates no more failures than %d; add or remove one", cs.Voters, cs.Voters-1))
	}
	if reachableVoters < cs.Quorum {
		cs.Warnings = append(cs.Warnings, fmt.Sprintf("no quorum: only %d of %d voters are reachable, %d needed; writes and failover stop", reachableVoters, cs.Voters, cs.Quorum))
	}
	if cs.LeaderID == "" {
		cs.Warnings = append(cs.Warnings, "no leader: an election is under way or there is no quorum")
	} else if cs.ActiveID == "" {
		cs.Warnings = append(cs.Warnings, "no active node right now: the leader has not confirmed its lease (or is an observer handing over)")
	}
	n.compareHashes(ctx, cs, minApplied)
	return cs, nil
}

// compareHashes asks every reachable member for its state hash at index and
// records a warning if two differ: divergence (hashicorp/raft #695).
func (n *Node) compareHashes(ctx context.Context, cs *ClusterStatus, index uint64) {
	cs.CheckIndex = index
	if index == 0 {
		return
	}
	var wg sync.WaitGroup
	for i := range cs.Members {
		ms := &cs.Members[i]
		if !ms.Reachable {
			continue
		}
		if ms.ID == n.cfg.NodeID {
			ms.HashAtCheck, _ = n.Store().HashAt(index)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h hashAnswer
			if err := n.getInternal(ctx, ms.ConsensusAddr, "/internal/hash?index="+strconv.FormatUint(index, 10), &h); err == nil {
				ms.HashAtCheck = h.Hash
			}
		}()
	}
	wg.Wait()
	first := ""
	for _, ms := range cs.Members {
		if ms.HashAtCheck == "" {
			continue
		}
		if first == "" {
			first = ms.HashAtCheck
		} else if ms.HashAtCheck != first {
			cs.Consistent = false
		}
	}
	if !cs.Consistent {
		cs.Warnings = append(cs.Warnings, fmt.Sprintf("DIVERGENCE: members hold different state at index %d; stop writes and restore the diverged node from the leader", index))
	}
}

type hashAnswer struct {
	Index uint64 `json:"index"`
	Hash  string `json:"hash"`
}

// FailoverSafe reports whether at least one passive, non-observer voter is
// reachable and has applied everything the leader had committed, polling
// for up to wait. The reason says why not.
func (n *Node) FailoverSafe(ctx context.Context, wait time.Duration) (bool, string, error) {
	deadline := time.Now().Add(wait)
	for {
		cs, err := n.ClusterStatus(ctx)
		if err != nil {
			return false, "", err
		}
		var leaderCommit uint64
		for _, m := range cs.Members {
			if m.ID == cs.LeaderID && m.Status != nil {
				leaderCommit = m.Status.CommitIndex
			}
		}
		reason := "no leader"
		if cs.LeaderID != "" {
			reason = "no passive, non-observer voter is reachable and fully caught up"
			for _, m := range cs.Members {
				if m.ID != cs.LeaderID && m.Reachable && !m.Observer && m.Suffrage == "Voter" && m.Status.AppliedIndex >= leaderCommit {
					return true, fmt.Sprintf("%s is caught up at index %d", m.ID, m.Status.AppliedIndex), nil
				}
			}
		}
		if time.Now().After(deadline) {
			return false, reason, nil
		}
		select {
		case <-ctx.Done():
			return false, reason, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Members returns the replicated member records.
func (n *Node) Members() ([]store.Member, error) { return n.Store().Members() }

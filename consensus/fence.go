package consensus

import (
	"time"
)

// KernelLease is a copy of the active lease held outside the process (the
// kernel fence of announce/fence): Hold(until) lets VIP traffic in until
// that instant, and a zero until withdraws it at once.
type KernelLease interface {
	Hold(until time.Time) error
}

// kernelLease is the node's KernelLease and what it was last told.
type kernelLease struct {
	k     KernelLease
	until time.Time // the end last put in; zero: withdrawn
	err   error     // the last Hold's error
}

// SetKernelLease gives the node a kernel copy of its lease. From then on
// every change of the lease is put into it before it takes effect for
// anyone else: a renewal after the quorum round that confirmed it, a
// withdrawal before leadership is handed over, when leadership is lost and
// when the node closes. Nil removes it (the lease it holds is withdrawn).
func (n *Node) SetKernelLease(k KernelLease) {
	n.fenceMu.Lock()
	old := n.fence
	n.fence = nil
	if k != nil {
		n.fence = &kernelLease{k: k}
	}
	n.fenceMu.Unlock()
	if old != nil && k == nil {
		_ = old.k.Hold(time.Time{})
	}
	n.syncFence()
}

// activeUntil returns the end of the lease while the node is active, the
// end of the drain while it drains (see Active.Drain), and zero otherwise.
func (n *Node) activeUntil() time.Time {
	if !n.IsActive() {
		return n.DrainUntil()
	}
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	if n.transferring {
		return time.Time{}
	}
	return n.leaseUntil
}

// syncFence puts the current lease into the kernel copy. The lease is read
// under fenceMu, so that the last call always leaves the kernel with the
// node's state at that call, whatever the order the calls came in.
func (n *Node) syncFence() {
	n.fenceMu.Lock()
	defer n.fenceMu.Unlock()
	f := n.fence
	if f == nil {
		return
	}
	until := n.activeUntil()
	if until.Equal(f.until) && f.err == nil {
		return
	}
	err := f.k.Hold(until)
	if err != nil && (f.err == nil || f.err.Error() != err.Error()) {
		n.logger.Error("putting the lease into the kernel fence", "err", err)
	}
	if err == nil && f.err != nil {
		n.logger.Info("kernel fence updated again")
	}
	f.until, f.err = until, err
}

// FenceStatus is the kernel fence's state in a node's status.
type FenceStatus struct {
	// Held is true while the kernel lets VIP traffic in.
	Held bool `json:"held"`
	// LeftMs is the time the kernel's lease has left.
	LeftMs int64 `json:"left_ms"`
	// Error is the last update's error.
	Error string `json:"error,omitempty"`
}

// fenceStatus reports the kernel fence, nil when there is none.
func (n *Node) fenceStatus() *FenceStatus {
	n.fenceMu.Lock()
	defer n.fenceMu.Unlock()
	if n.fence == nil {
		return nil
	}
	st := &FenceStatus{}
	if left := time.Until(n.fence.until); left > 0 {
		st.Held, st.LeftMs = true, left.Milliseconds()
	}
	if n.fence.err != nil {
		st.Error = n.fence.err.Error()
	}
	return st
}

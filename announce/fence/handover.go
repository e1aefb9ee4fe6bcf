package fence

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// strayMark is the conntrack mark of a connection this node did not accept
// (see Forward).
const strayMark = 0x52565450 // "RVTP"

// forward is a running Forward: its tables and when they go.
type forward struct {
	tables []*nftables.Table
	until  time.Time
}

// Forward makes a new active node pass on, until the given instant, the VIP
// traffic of connections that the previous owner prev accepted before the
// VIP moved: TCP segments that open no connection (no SYN) and belong to
// none this node knows. When the neighbour entry of a client (or a router's
// best path) moves in the middle of such a connection, its next segments
// reach this node, whose kernel would answer them with a reset; passed on to
// prev over dev, they reach the old node, which still accepts them while
// its drain lasts (see announce.Desired.Drain) and answers the client
// itself. After the drain prev's own fence drops them, so the forwarding
// can never make two nodes serve one connection.
//
// prev must be an on-link neighbour on dev; the VIPs of prev's family are
// forwarded (an IPv4 prev forwards the IPv4 VIPs). It installs a table per
// family (ip, ip6: the kernel's dup is not available in inet tables) named
// after the fence's with "-handover", which uses connection tracking while
// it exists; a Hold after until, a withdrawal and Close remove it. A second
// Forward replaces the first.
func (f *Fence) Forward(prev netip.Addr, dev string, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("fence: closed")
	}
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return fmt.Errorf("fence: forwarding to %s: %w", prev, err)
	}
	prev = prev.Unmap()
	fam := nftables.TableFamilyIPv4
	var vips []netip.Addr
	for _, p := range f.cfg.VIPs {
		if a := p.Addr().Unmap(); a.Is4() == prev.Is4() {
			vips = append(vips, a)
		}
	}
	if prev.Is6() {
		fam = nftables.TableFamilyIPv6
	}
	f.dropForward()
	if len(vips) == 0 {
		return nil
	}
	c := f.conn
	t := &nftables.Table{Name: f.cfg.Table + "-handover", Family: fam}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	// After conntrack (priority -200), before routing.
	chain := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
	off, size := uint32(16), uint32(4)
	if prev.Is6() {
		off, size = 24, 16
	}
	dupDrop := []expr.Any{
		&expr.Immediate{Register: 1, Data: prev.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.NativeEndian.PutUint32(uint32(ifi.Index))},
		&expr.Dup{RegAddr: 1, RegDev: 2, IsRegDevSet: true},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	mark := binaryutil.NativeEndian.PutUint32(strayMark)
	for _, v := range vips {
		// ip daddr VIP tcp flags & syn == 0 ct state new,invalid
		// ct mark set strayMark dup to prev device dev drop
		exprs := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v.AsSlice()},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x02}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW | expr.CtStateBitINVALID), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Immediate{Register: 1, Data: mark},
			&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: append(exprs, dupDrop...)})
	}
	// ct mark strayMark dup to prev device dev drop: the rest of such a
	// connection.
	c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: append([]expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
	}, dupDrop...)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fence: installing the hand-over forwarding to %s: %w", prev, err)
	}
	f.fwd = &forward{tables: []*nftables.Table{t}, until: until}
	return nil
}

// Forwarding reports whether a Forward is in place.
func (f *Fence) Forwarding() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fwd != nil
}

// dropForward queues the removal of a Forward's tables (flushed with the
// caller's transaction).
func (f *Fence) dropForward() {
	if f.fwd == nil {
		return
	}
	for _, t := range f.fwd.tables {
		f.conn.DelTable(t)
	}
	f.fwd = nil
}

// expireForward queues the removal of a Forward whose time is up, or of
// any Forward when the lease is let go (left <= 0), and reports whether it
// queued something.
func (f *Fence) expireForward(left time.Duration) bool {
	if f.fwd == nil || left > 0 && time.Now().Before(f.fwd.until) {
		return false
	}
	f.dropForward()
	return true
}

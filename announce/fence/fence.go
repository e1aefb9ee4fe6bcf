package fence

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DefaultTable is the nftables table (family inet) a fence owns.
const DefaultTable = "raftvip"

// DefaultMargin is taken off every lease before it goes into the kernel:
// the kernel checks element timeouts against its own clock, in jiffies.
const DefaultMargin = 10 * time.Millisecond

// Config says what a Fence guards.
type Config struct {
	// Table is the nftables table (family inet) the fence creates and
	// owns; DefaultTable when empty. An existing table of that name is
	// replaced.
	Table string
	// VIPs are the addresses whose traffic is dropped unless the lease is
	// held.
	VIPs []netip.Prefix
	// Margin is taken off each lease (DefaultMargin when zero).
	Margin time.Duration
	// NetNS, when not zero, is a file descriptor of the network namespace
	// to install the fence in (tests); zero means the caller's.
	NetNS int
}

// Fence holds the active lease in the kernel: an nftables rule on the input
// hook drops traffic to a VIP unless the VIP is an element of the lease
// set, and each element carries a timeout, so that the kernel stops
// accepting VIP traffic when the lease ends even if no process acts.
type Fence struct {
	cfg    Config
	conn   *nftables.Conn
	table  *nftables.Table
	sets   [2]family // IPv4, IPv6
	mu     sync.Mutex
	until  time.Time // end of the lease in the kernel; zero: not held
	err    error     // the last Hold's error
	fwd    *forward  // a running Forward
	closed bool
}

type family struct {
	vips  *nftables.Set // every VIP of the family, no timeout
	lease *nftables.Set // the VIPs while the lease is held, with a timeout
	keys  []nftables.SetElement
}

// New installs the fence: the table, the sets and the rule, with the lease
// not held (VIP traffic dropped). It fails with a clear error when the
// kernel has no nftables.
func New(cfg Config) (*Fence, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Margin == 0 {
		cfg.Margin = DefaultMargin
	}
	if len(cfg.VIPs) == 0 {
		return nil, errors.New("fence: no VIPs to guard")
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("fence: opening netlink to nftables: %w", err)
	}
	f := &Fence{cfg: cfg, conn: conn, table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}}
	if err := f.install(); err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("fence: installing nftables table inet %s: %w", cfg.Table, err)
	}
	return f, nil
}

func (f *Fence) install() error {
	c := f.conn
	// Replace whatever an earlier run left: add (a no-op if present), then
	// delete and create afresh, all in one transaction.
	c.AddTable(f.table)
	c.DelTable(f.table)
	c.AddTable(f.table)
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Name: f.cfg.Table + "-handover", Family: fam}
		c.AddTable(t)
		c.DelTable(t) // a Forward's, left by a killed run
	}
	types := [2]nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIP6Addr}
	for i, name := range [2]string{"4", "6"} {
		fam := &f.sets[i]
		fam.vips = &nftables.Set{Table: f.table, Name: "vips" + name, KeyType: types[i]}
		fam.lease = &nftables.Set{Table: f.table, Name: "lease" + name, KeyType: types[i], HasTimeout: true}
		for _, p := range f.cfg.VIPs {
			a := p.Addr().Unmap()
			if a.Is4() == (i == 0) {
				fam.keys = append(fam.keys, nftables.SetElement{Key: a.AsSlice()})
			}
		}
		if err := c.AddSet(fam.vips, fam.keys); err != nil {
			return err
		}
		if err := c.AddSet(fam.lease, nil); err != nil {
			return err
		}
	}
	policy := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{Name: "input", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	// meta nfproto ipv4 ip daddr @vips4 ip daddr != @lease4 drop, and the
	// same for IPv6.
	for i, p := range [2]struct {
		proto     byte
		off, size uint32
	}{{unix.NFPROTO_IPV4, 16, 4}, {unix.NFPROTO_IPV6, 24, 16}} {
		fam := f.sets[i]
		c.AddRule(&nftables.Rule{Table: f.table, Chain: chain, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p.proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: p.off, Len: p.size},
			&expr.Lookup{SourceRegister: 1, SetName: fam.vips.Name, SetID: fam.vips.ID},
			&expr.Lookup{SourceRegister: 1, SetName: fam.lease.Name, SetID: fam.lease.ID, Invert: true},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return err
	}
	return nil
}

// Hold puts the lease into the kernel until the given instant (less the
// margin); a zero or past instant withdraws it at once. The kernel drops
// VIP traffic from then on unless Hold is called again with a later end.
func (f *Fence) Hold(until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("fence: closed")
	}
	var left time.Duration
	if d := time.Until(until); d > f.cfg.Margin { // (a zero until would overflow the subtraction)
		left = (d - f.cfg.Margin).Truncate(time.Millisecond)
	}
	// Is an element still in the kernel? Then it is deleted and added
	// again in one transaction, which packets see whole. Adding an element
	// that is there does not renew it: before Linux 6.10 it keeps its old
	// timeout, and on 6.18 the kernel reports the new expiry but still
	// drops packets at the old one (TestFenceExpiresInKernel's keptAlive
	// saw one connection in every lease fail). Near its end the element
	// may expire before the transaction runs; a delete of an absent
	// element fails the whole transaction, so that case is tried again
	// without the delete.
	present := f.err != nil || time.Until(f.until) > 0
	if f.expireForward(left) {
		if err := f.conn.Flush(); err != nil {
			f.err = fmt.Errorf("fence: removing the hand-over forwarding: %w", err)
			return f.err
		}
	}
	err := f.update(present, left)
	if err != nil && left <= 0 && errors.Is(err, unix.ENOENT) {
		err = nil // withdrawn: it had expired already
	}
	if err != nil && present && errors.Is(err, unix.ENOENT) {
		err = f.update(false, left)
	}
	if err != nil {
		f.err = fmt.Errorf("fence: updating the lease: %w", err)
		return f.err
	}
	f.err = nil
	if left > 0 {
		f.until = time.Now().Add(left)
	} else {
		f.until = time.Time{}
	}
	return nil
}

// update sends one transaction: delete the lease elements (if present),
// then add them with the timeout left (if positive).
func (f *Fence) update(present bool, left time.Duration) error {
	queued := false
	for _, fam := range f.sets {
		if len(fam.keys) == 0 {
			continue
		}
		if present {
			if err := f.conn.SetDeleteElements(fam.lease, fam.keys); err != nil {
				return err
			}
			queued = true
		}
		if left > 0 {
			els := make([]nftables.SetElement, len(fam.keys))
			for i, k := range fam.keys {
				els[i] = nftables.SetElement{Key: k.Key, Timeout: left}
			}
			if err := f.conn.SetAddElements(fam.lease, els); err != nil {
				return err
			}
			queued = true
		}
	}
	if !queued {
		return nil
	}
	return f.conn.Flush()
}

// State is what a fence reports for status views.
type State struct {
	// Held is true while the kernel still accepts VIP traffic.
	Held bool
	// Left is the time the kernel's lease has left.
	Left time.Duration
	// Err is the last update's error, if it failed.
	Err string
}

// State reports the fence's lease as last put into the kernel.
func (f *Fence) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s State
	if left := time.Until(f.until); left > 0 {
		s.Held, s.Left = true, left
	}
	if f.err != nil {
		s.Err = f.err.Error()
	}
	return s
}

// Close removes the table (and with it the rule), and closes the netlink
// connection. Call it after the VIPs were released. It is safe to call twice.
func (f *Fence) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.dropForward()
	f.conn.DelTable(f.table)
	err := f.conn.Flush()
	if cerr := f.conn.CloseLasting(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fence: removing table inet %s: %w", f.cfg.Table, err)
	}
	return nil
}

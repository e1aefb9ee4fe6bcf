package arp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	marp "github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"

	"github.com/raftvip/raftvip/announce"
)

var (
	ourMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	vip4      = netip.MustParseAddr("198.18.0.100")
	vip6      = netip.MustParseAddr("2001:db8::100")
	client4   = netip.MustParseAddr("198.18.0.10")
	client6   = netip.MustParseAddr("fe80::a")
	fakeIface = &net.Interface{Index: 7, Name: "fake0", HardwareAddr: ourMAC, MTU: 1500}
)

// sent is one frame the announcer wrote.
type sent struct {
	at     time.Time
	reply  bool // an answer to a request (Reply / solicited NA)
	op     marp.Operation
	target netip.Addr // the address announced or answered for
	hw     net.HardwareAddr
	dst    netip.Addr // NDP: where it went
	na     *ndp.NeighborAdvertisement
}

// wire records what the fakes wrote, in order.
type wire struct {
	mu  sync.Mutex
	out []sent
}

func (w *wire) add(s sent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.at = time.Now()
	w.out = append(w.out, s)
}

func (w *wire) take() []sent {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.out
	w.out = nil
	return out
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// deadline is a read deadline that a fake's blocking read honours.
type deadline struct {
	mu sync.Mutex
	t  time.Time
}

func (d *deadline) set(t time.Time) error {
	d.mu.Lock()
	d.t = t
	d.mu.Unlock()
	return nil
}

func (d *deadline) wait() <-chan time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t.IsZero() {
		return nil
	}
	return time.After(time.Until(d.t))
}

// fakeARP is an ARP connection: Read returns what the test sends on in.
type fakeARP struct {
	w      *wire
	in     chan *marp.Packet
	closed chan struct{}
	once   sync.Once
	dl     deadline
}

func newFakeARP(w *wire) *fakeARP {
	return &fakeARP{w: w, in: make(chan *marp.Packet), closed: make(chan struct{})}
}

func (f *fakeARP) Read() (*marp.Packet, *ethernet.Frame, error) {
	select {
	case p := <-f.in:
		return p, nil, nil
	case <-f.dl.wait():
		return nil, nil, timeoutErr{}
	case <-f.closed:
		return nil, nil, net.ErrClosed
	}
}

func (f *fakeARP) Reply(req *marp.Packet, hw net.HardwareAddr, ip netip.Addr) error {
	f.w.add(sent{reply: true, op: marp.OperationReply, target: ip, hw: hw})
	return nil
}

func (f *fakeARP) WriteTo(p *marp.Packet, _ net.HardwareAddr) error {
	f.w.add(sent{op: p.Operation, target: p.SenderIP, hw: p.SenderHardwareAddr})
	return nil
}

func (f *fakeARP) SetReadDeadline(t time.Time) error { return f.dl.set(t) }
func (f *fakeARP) Close() error                      { f.once.Do(func() { close(f.closed) }); return nil }

// ndpIn is one message for fakeNDP to read.
type ndpIn struct {
	m   ndp.Message
	src netip.Addr
}

type fakeNDP struct {
	w      *wire
	in     chan ndpIn
	closed chan struct{}
	once   sync.Once
	dl     deadline
}

func newFakeNDP(w *wire) *fakeNDP {
	return &fakeNDP{w: w, in: make(chan ndpIn), closed: make(chan struct{})}
}

func (f *fakeNDP) ReadFrom() (ndp.Message, *ipv6.ControlMessage, netip.Addr, error) {
	select {
	case m := <-f.in:
		return m.m, nil, m.src, nil
	case <-f.dl.wait():
		return nil, nil, netip.Addr{}, timeoutErr{}
	case <-f.closed:
		return nil, nil, netip.Addr{}, net.ErrClosed
	}
}

func (f *fakeNDP) WriteTo(m ndp.Message, _ *ipv6.ControlMessage, dst netip.Addr) error {
	na := m.(*ndp.NeighborAdvertisement)
	var hw net.HardwareAddr
	for _, o := range na.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok {
			hw = l.Addr
		}
	}
	f.w.add(sent{reply: na.Solicited, target: na.TargetAddress, hw: hw, dst: dst, na: na})
	return nil
}

func (f *fakeNDP) SetReadDeadline(t time.Time) error { return f.dl.set(t) }
func (f *fakeNDP) Close() error                      { f.once.Do(func() { close(f.closed) }); return nil }

// holdState records the VIPs' presence on the host.
type holdState struct {
	held  atomic.Bool
	calls atomic.Int32
}

func (h *holdState) hold(_ context.Context, add bool) error {
	h.calls.Add(1)
	h.held.Store(add)
	return nil
}

func request(target netip.Addr) *marp.Packet {
	p, err := marp.NewPacket(marp.OperationRequest, clientMAC, client4, ethernet.Broadcast, target)
	if err != nil {
		panic(err)
	}
	return p
}

// TestAnswersOnlyWhileActive: ARP requests for a VIP are answered with this
// node's MAC only between Set(Active) and letting go, and only while the
// lease check says active; requests for other addresses and replies are
// never answered. The VIPs are on the host exactly while active.
func TestAnswersOnlyWhileActive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &wire{}
		arpc := newFakeARP(w)
		h := &holdState{}
		var lease atomic.Bool
		lease.Store(true)
		a, err := NewWith(Config{VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/24")}, Active: lease.Load, Refresh: -1},
			fakeIface, Conns{ARP: arpc, Hold: h.hold})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ask := func(p *marp.Packet) []sent {
			arpc.in <- p
			synctest.Wait()
			var replies []sent
			for _, s := range w.take() {
				if s.reply {
					replies = append(replies, s)
				}
			}
			return replies
		}
		if r := ask(request(vip4)); len(r) != 0 || h.held.Load() {
			t.Fatalf("passive: %d answers, VIP held %v", len(r), h.held.Load())
		}
		if err := a.Set(context.Background(), announce.Desired{Active: true, Term: 2}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		w.take() // the takeover burst
		if !h.held.Load() {
			t.Fatal("active but the VIP is not on the host")
		}
		if r := ask(request(vip4)); len(r) != 1 || r[0].target != vip4 || r[0].hw.String() != ourMAC.String() {
			t.Fatalf("active: answers %+v, want one for %s with %s", r, vip4, ourMAC)
		}
		if r := ask(request(client4)); len(r) != 0 {
			t.Fatalf("answered for an address that is not a VIP: %+v", r)
		}
		reply, _ := marp.NewPacket(marp.OperationReply, clientMAC, client4, ourMAC, vip4)
		if r := ask(reply); len(r) != 0 {
			t.Fatalf("answered a reply: %+v", r)
		}
		lease.Store(false) // the lease ran out before the agent let go
		if r := ask(request(vip4)); len(r) != 0 {
			t.Fatalf("answered with the lease run out: %+v", r)
		}
		lease.Store(true)
		if err := a.Set(context.Background(), announce.Desired{}); err != nil {
			t.Fatal(err)
		}
		if r := ask(request(vip4)); len(r) != 0 || h.held.Load() {
			t.Fatalf("after letting go: %d answers, VIP held %v", len(r), h.held.Load())
		}
		if got := a.Answered(); got != 1 {
			t.Fatalf("Answered() = %d, want 1", got)
		}
	})
}

// TestTakeoverBurstAndRefresh: taking over sends Gratuitous announcements
// (an ARP request and reply each) GratuitousInterval apart, then one every
// Refresh while active; letting go stops them; a drain stops claiming
// (no answers, no refresh) while the VIPs stay on the host.
func TestTakeoverBurstAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &wire{}
		arpc := newFakeARP(w)
		h := &holdState{}
		a, err := NewWith(Config{VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/24")}, Active: func() bool { return true },
			Gratuitous: 3, GratuitousInterval: 50 * time.Millisecond, Refresh: 3 * time.Second}, fakeIface, Conns{ARP: arpc, Hold: h.hold})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		t0 := time.Now()
		if err := a.Set(context.Background(), announce.Desired{Active: true, Term: 5}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		want := []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 3100 * time.Millisecond, 6100 * time.Millisecond, 9100 * time.Millisecond}
		got := w.take()
		if len(got) != 2*len(want) {
			t.Fatalf("%d frames in 10 s, want %d: %+v", len(got), 2*len(want), got)
		}
		for i, at := range want {
			req, rep := got[2*i], got[2*i+1]
			if req.op != marp.OperationRequest || rep.op != marp.OperationReply || req.target != vip4 || rep.hw.String() != ourMAC.String() {
				t.Fatalf("announcement %d: %+v %+v", i, req, rep)
			}
			if d := req.at.Sub(t0); d != at {
				t.Errorf("announcement %d at %v, want %v", i, d, at)
			}
		}
		// A drain: nothing claimed any more, the VIP still held.
		if err := a.Set(context.Background(), announce.Desired{Drain: time.Now().Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		arpc.in <- request(vip4)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := w.take(); len(got) != 0 || !h.held.Load() {
			t.Fatalf("draining: %d frames sent (want none), VIP held %v (want true)", len(got), h.held.Load())
		}
		if err := a.Set(context.Background(), announce.Desired{}); err != nil {
			t.Fatal(err)
		}
		if h.held.Load() {
			t.Fatal("the VIP stayed on the host after the drain ended")
		}
		// Active again: a new burst.
		if err := a.Set(context.Background(), announce.Desired{Active: true, Term: 7}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := w.take(); len(got) != 6 {
			t.Fatalf("second takeover: %d frames, want 6", len(got))
		}
	})
}

// TestNDP: neighbour solicitations for an IPv6 VIP are answered while
// active (solicited, to the asker; duplicate address detection from the
// unspecified address, to all nodes and unsolicited), and a takeover sends
// unsolicited advertisements with the override flag to all nodes.
func TestNDP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &wire{}
		ndpc := newFakeNDP(w)
		h := &holdState{}
		a, err := NewWith(Config{VIPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::100/64")}, Active: func() bool { return true },
			Gratuitous: 2, Refresh: -1}, fakeIface, Conns{NDP: ndpc, Hold: h.hold})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ns := func(target, src netip.Addr) []sent {
			ndpc.in <- ndpIn{m: &ndp.NeighborSolicitation{TargetAddress: target}, src: src}
			synctest.Wait()
			return w.take()
		}
		if got := ns(vip6, client6); len(got) != 0 {
			t.Fatalf("passive node answered: %+v", got)
		}
		if err := a.Set(context.Background(), announce.Desired{Active: true, Term: 3}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		burst := w.take()
		if len(burst) != 2 {
			t.Fatalf("takeover: %d advertisements, want 2", len(burst))
		}
		for _, s := range burst {
			if s.reply || !s.na.Override || s.dst != netip.IPv6LinkLocalAllNodes() || s.target != vip6 || s.hw.String() != ourMAC.String() {
				t.Fatalf("takeover advertisement %+v", s)
			}
		}
		if got := ns(vip6, client6); len(got) != 1 || !got[0].reply || got[0].dst != client6 || got[0].hw.String() != ourMAC.String() {
			t.Fatalf("solicitation: %+v, want one solicited answer to %s", got, client6)
		}
		if got := ns(vip6, netip.IPv6Unspecified()); len(got) != 1 || got[0].reply || got[0].dst != netip.IPv6LinkLocalAllNodes() {
			t.Fatalf("duplicate address detection: %+v, want one unsolicited answer to all nodes", got)
		}
		if got := ns(netip.MustParseAddr("2001:db8::7"), client6); len(got) != 0 {
			t.Fatalf("answered for an address that is not a VIP: %+v", got)
		}
	})
}

// TestCloseReleases: Close lets the VIPs go, stops every goroutine (the
// bubble would not end otherwise) and is safe twice; Set after Close
// refuses to take over.
func TestCloseReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &wire{}
		h := &holdState{}
		closed := 0
		a, err := NewWith(Config{VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/24"), netip.MustParsePrefix("2001:db8::100/64")},
			Active: func() bool { return true }}, fakeIface, Conns{ARP: newFakeARP(w), NDP: newFakeNDP(w), Hold: h.hold, Close: func() { closed++ }})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Set(context.Background(), announce.Desired{Active: true}); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if h.held.Load() || closed != 1 || len(a.Announced()) != 0 {
			t.Fatalf("after Close: held %v, clean-up ran %d times, announced %v", h.held.Load(), closed, a.Announced())
		}
		if err := a.Set(context.Background(), announce.Desired{Active: true}); err == nil {
			t.Fatal("Set(Active) after Close succeeded")
		}
	})
}

// TestNewWithRefusesMissingParts: a connection is needed for each family
// of the VIPs, and the other settings are checked as New checks them.
func TestNewWithRefusesMissingParts(t *testing.T) {
	w := &wire{}
	h := &holdState{}
	v4 := []netip.Prefix{netip.MustParsePrefix("198.18.0.100/24")}
	yes := func() bool { return true }
	for name, c := range map[string]struct {
		cfg   Config
		conns Conns
	}{
		"no ARP conn for an IPv4 VIP": {Config{VIPs: v4, Active: yes}, Conns{NDP: newFakeNDP(w), Hold: h.hold}},
		"no Hold":                     {Config{VIPs: v4, Active: yes}, Conns{ARP: newFakeARP(w)}},
		"no VIP":                      {Config{Active: yes}, Conns{ARP: newFakeARP(w), Hold: h.hold}},
		"no active check":             {Config{VIPs: v4}, Conns{ARP: newFakeARP(w), Hold: h.hold}},
	} {
		if _, err := NewWith(c.cfg, fakeIface, c.conns); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

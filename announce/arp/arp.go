package arp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	marp "github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"

	"github.com/raftvip/raftvip/announce"
)

// Config configures an ARP/NDP announcer.
type Config struct {
	// Interface is the node's VirtInterface: the layer-2 interface on which
	// clients ask for the VIPs.
	Interface string
	// VIPs are the virtual IPs, each with the prefix length of its subnet on
	// Interface (198.18.0.100/24, 2001:db8::100/64).
	VIPs []netip.Prefix
	// Active is checked before every ARP or NDP answer.
	Active announce.ActiveFunc
	// Gratuitous is how many gratuitous ARPs (unsolicited neighbour
	// advertisements) are sent on taking the VIPs over; 0 means 3.
	Gratuitous int
	// GratuitousInterval spaces them; 0 means 50 ms.
	GratuitousInterval time.Duration
	// Refresh repeats one gratuitous announcement this often while active,
	// for switches whose tables age quickly; 0 means 3 s, negative never.
	Refresh time.Duration
	// Script, when set, is called as "SCRIPT add|remove IFACE ADDR/PREFIX"
	// instead of raftvip adding the address itself (Digital Rebar's
	// VirtInterfaceScript). The script's address is then answered by the
	// kernel, so a frozen or cut-off node keeps answering for it: the
	// process-answered fencing is given up.
	Script string
	// Logger receives what the announcer does; nil means slog.Default().
	Logger *slog.Logger
}

// ARPConn is what the announcer needs of an ARP connection
// (*github.com/mdlayher/arp.Client has it; tests pass a fake).
type ARPConn interface {
	Read() (*marp.Packet, *ethernet.Frame, error)
	Reply(req *marp.Packet, hwAddr net.HardwareAddr, ip netip.Addr) error
	WriteTo(p *marp.Packet, addr net.HardwareAddr) error
	SetReadDeadline(t time.Time) error
	Close() error
}

// NDPConn is what the announcer needs of an NDP connection
// (*github.com/mdlayher/ndp.Conn has it, once listening on the VIPs'
// solicited-node groups; tests pass a fake).
type NDPConn interface {
	ReadFrom() (ndp.Message, *ipv6.ControlMessage, netip.Addr, error)
	WriteTo(m ndp.Message, cm *ipv6.ControlMessage, dst netip.Addr) error
	SetReadDeadline(t time.Time) error
	Close() error
}

// Conns are the announcer's connections and the operation that puts the
// VIPs on the host: New opens the real ones, NewWith takes them (tests).
type Conns struct {
	ARP ARPConn // nil when there is no IPv4 VIP
	NDP NDPConn // nil when there is no IPv6 VIP
	// Hold adds the VIPs to the host (add) or removes them.
	Hold func(ctx context.Context, add bool) error
	// Close, if set, runs after the connections are closed (New restores
	// the interface's ARP sysctls there).
	Close func()
}

// holder is the interface the VIPs are added to: the kernel accepts traffic
// for an address on lo, but with arp_ignore=1 on Interface it never answers
// ARP for it there; the process does, while it is active.
const holder = "lo"

// Announcer answers ARP (IPv4) and neighbour solicitations (IPv6) for the
// VIPs from the process, holds the VIPs on the host while active, and sends
// gratuitous announcements on every takeover.
type Announcer struct {
	cfg    Config
	logger *slog.Logger
	ifi    *net.Interface
	v4, v6 []netip.Addr

	arpc    ARPConn
	ndpc    NDPConn
	hold    func(ctx context.Context, add bool) error
	onClose func()

	active atomic.Bool // answering: set after the address is in place, cleared before it goes

	mu       sync.Mutex // serialises Set and Close
	refresh  chan struct{}
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
	answered atomic.Uint64
}

var _ announce.Announcer = (*Announcer)(nil)

// Sentinel errors.
var (
	// ErrConfig means the configuration cannot work on this host.
	ErrConfig = errors.New("ARP announcer configuration")
)

// New checks the configuration against the host, removes any VIP left on
// its interfaces by an earlier crash, configures the kernel not to answer
// ARP for the VIPs, and starts the responders (passive until Set).
func New(cfg Config) (*Announcer, error) {
	a, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	if a.ifi, err = net.InterfaceByName(cfg.Interface); err != nil {
		return nil, fmt.Errorf("%w: VirtInterface %q: %v", ErrConfig, cfg.Interface, err)
	}
	if err := a.checkSubnets(); err != nil {
		return nil, err
	}
	var c Conns
	if cfg.Script == "" && len(a.v4) > 0 {
		// The kernel must not answer ARP for the VIPs on the holder (the
		// process does, while active): arp_ignore 1, arp_announce 2,
		// restored on Close.
		restore, err := setSysctls(cfg.Interface, map[string]string{"arp_ignore": "1", "arp_announce": "2"})
		if err != nil {
			return nil, err
		}
		c.Close = restore
	}
	announce.RemoveStale(cfg.VIPs, a.logger)
	fail := func(err error) (*Announcer, error) {
		if c.ARP != nil {
			c.ARP.Close()
		}
		if c.Close != nil {
			c.Close()
		}
		return nil, err
	}
	if len(a.v4) > 0 {
		arpc, err := marp.Dial(a.ifi)
		if err != nil {
			return fail(fmt.Errorf("opening ARP socket on %s: %w", cfg.Interface, err))
		}
		c.ARP = arpc
	}
	if len(a.v6) > 0 {
		ndpc, err := a.listenNDP()
		if err != nil {
			return fail(err)
		}
		c.NDP = ndpc
	}
	c.Hold = a.addresses
	return a.start(c), nil
}

// NewWith is New on given connections, for tests: no host checks, no
// sysctls, no sockets of its own. cfg.Interface is taken from ifi.
func NewWith(cfg Config, ifi *net.Interface, c Conns) (*Announcer, error) {
	cfg.Interface = ifi.Name
	a, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	a.ifi = ifi
	for _, v := range cfg.VIPs {
		if vip := v.Addr().Unmap(); vip.Is4() {
			a.v4 = append(a.v4, vip)
		} else {
			a.v6 = append(a.v6, vip)
		}
	}
	if (len(a.v4) > 0) != (c.ARP != nil) || (len(a.v6) > 0) != (c.NDP != nil) || c.Hold == nil {
		return nil, fmt.Errorf("%w: a connection for each address family of the VIPs, and Hold, are needed", ErrConfig)
	}
	return a.start(c), nil
}

// prepare checks cfg and fills its defaults.
func prepare(cfg Config) (*Announcer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Gratuitous <= 0 {
		cfg.Gratuitous = 3
	}
	if cfg.GratuitousInterval <= 0 {
		cfg.GratuitousInterval = 50 * time.Millisecond
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 3 * time.Second
	}
	if cfg.Active == nil {
		return nil, fmt.Errorf("%w: no active check", ErrConfig)
	}
	if len(cfg.VIPs) == 0 {
		return nil, fmt.Errorf("%w: no VIP", ErrConfig)
	}
	return &Announcer{cfg: cfg, logger: cfg.Logger.With("iface", cfg.Interface), stop: make(chan struct{})}, nil
}

// start takes the connections and starts the responders.
func (a *Announcer) start(c Conns) *Announcer {
	a.arpc, a.ndpc, a.hold, a.onClose = c.ARP, c.NDP, c.Hold, c.Close
	if a.arpc != nil {
		a.wg.Add(1)
		go a.serveARP()
	}
	if a.ndpc != nil {
		a.wg.Add(1)
		go a.serveNDP()
	}
	return a
}

// setSysctls writes the interface's IPv4 sysctls and returns a function
// that puts back the values they had.
func setSysctls(iface string, set map[string]string) (func(), error) {
	old := map[string][]byte{}
	restore := func() {
		for p, v := range old {
			_ = os.WriteFile(p, v, 0o644)
		}
	}
	for k, v := range set {
		p := filepath.Join("/proc/sys/net/ipv4/conf", iface, k)
		was, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			restore()
			return nil, fmt.Errorf("%w: setting %s: %v", ErrConfig, p, err)
		}
		old[p] = was
	}
	return restore, nil
}

// checkSubnets splits the VIPs by family and checks that each lies in a
// subnet of the interface.
func (a *Announcer) checkSubnets() error {
	link, err := netlink.LinkByName(a.cfg.Interface)
	if err != nil {
		return fmt.Errorf("%w: VirtInterface %q: %v", ErrConfig, a.cfg.Interface, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", a.cfg.Interface, err)
	}
	var have []string
	var subnets []netip.Prefix
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		ones, _ := ad.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones).Masked()
		subnets = append(subnets, p)
		have = append(have, ad.IPNet.String())
	}
	for _, v := range a.cfg.VIPs {
		vip := v.Addr().Unmap()
		if !vip.IsGlobalUnicast() {
			return fmt.Errorf("%w: VIP %s is not a unicast host address", ErrConfig, v)
		}
		in := slices.ContainsFunc(subnets, func(p netip.Prefix) bool { return p.Contains(vip) && p.Addr() != vip })
		if !in {
			return fmt.Errorf("%w: VIP %s is not in a subnet of %s (its addresses: %s); on a flat network the VIP must share a subnet with VirtInterface",
				ErrConfig, vip, a.cfg.Interface, strings.Join(have, ", "))
		}
		if vip.Is4() {
			a.v4 = append(a.v4, vip)
		} else {
			a.v6 = append(a.v6, vip)
		}
	}
	return nil
}

// answering reports whether the process answers for the VIPs right now.
func (a *Announcer) answering() bool { return a.active.Load() && a.cfg.Active() }

// Answered returns how many ARP and NDP requests this announcer answered.
func (a *Announcer) Answered() uint64 { return a.answered.Load() }

func (a *Announcer) serveARP() {
	defer a.wg.Done()
	for {
		select {
		case <-a.stop:
			return
		default:
		}
		_ = a.arpc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		p, _, err := a.arpc.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case <-a.stop:
				return
			default:
			}
			continue // a malformed frame
		}
		if p.Operation != marp.OperationRequest || !slices.Contains(a.v4, p.TargetIP) || !a.answering() {
			continue
		}
		if err := a.arpc.Reply(p, a.ifi.HardwareAddr, p.TargetIP); err != nil {
			a.logger.Warn("ARP reply failed", "vip", p.TargetIP, "err", err)
			continue
		}
		a.answered.Add(1)
	}
}

// listenNDP opens the NDP connection, taking only neighbour solicitations,
// in the VIPs' solicited-node multicast groups.
func (a *Announcer) listenNDP() (*ndp.Conn, error) {
	// The link-local address may still be tentative (duplicate address
	// detection) right after the link came up: retry for a while.
	deadline := time.Now().Add(5 * time.Second)
	var c *ndp.Conn
	for {
		var err error
		if c, _, err = ndp.Listen(a.ifi, ndp.LinkLocal); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("opening NDP socket on %s: %w", a.cfg.Interface, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("NDP filter: %w", err)
	}
	for _, v := range a.v6 {
		g, err := ndp.SolicitedNodeMulticast(v)
		if err == nil {
			err = c.JoinGroup(g)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("joining the solicited-node group of VIP %s: %w", v, err)
		}
	}
	return c, nil
}

func (a *Announcer) serveNDP() {
	defer a.wg.Done()
	for {
		select {
		case <-a.stop:
			return
		default:
		}
		_ = a.ndpc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		m, _, src, err := a.ndpc.ReadFrom()
		if err != nil {
			continue
		}
		ns, ok := m.(*ndp.NeighborSolicitation)
		if !ok || !slices.Contains(a.v6, ns.TargetAddress) || !a.answering() {
			continue
		}
		na := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: ns.TargetAddress,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: a.ifi.HardwareAddr}}}
		dst := src
		if !src.IsValid() || src.IsUnspecified() { // duplicate address detection: answer everyone
			na.Solicited = false
			dst = netip.IPv6LinkLocalAllNodes()
		}
		if err := a.ndpc.WriteTo(na, nil, dst); err != nil {
			a.logger.Warn("neighbour advertisement failed", "vip", ns.TargetAddress, "err", err)
			continue
		}
		a.answered.Add(1)
	}
}

// announceOnce sends one gratuitous ARP request and reply for each IPv4 VIP
// and one unsolicited neighbour advertisement for each IPv6 VIP.
func (a *Announcer) announceOnce() {
	if !a.answering() {
		return
	}
	for _, v := range a.v4 {
		for _, op := range []marp.Operation{marp.OperationRequest, marp.OperationReply} {
			p, err := marp.NewPacket(op, a.ifi.HardwareAddr, v, ethernet.Broadcast, v)
			if err == nil {
				err = a.arpc.WriteTo(p, ethernet.Broadcast)
			}
			if err != nil {
				a.logger.Warn("gratuitous ARP failed", "vip", v, "err", err)
			}
		}
	}
	for _, v := range a.v6 {
		na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: v,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: a.ifi.HardwareAddr}}}
		if err := a.ndpc.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
			a.logger.Warn("unsolicited neighbour advertisement failed", "vip", v, "err", err)
		}
	}
}

// gratuitous sends the burst, then refreshes, until stopped.
func (a *Announcer) gratuitous(stop chan struct{}) {
	defer a.wg.Done()
	a.announceOnce()
	for i := 1; i < a.cfg.Gratuitous; i++ {
		select {
		case <-stop:
			return
		case <-time.After(a.cfg.GratuitousInterval):
		}
		a.announceOnce()
	}
	if a.cfg.Refresh < 0 {
		return
	}
	t := time.NewTicker(a.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			a.announceOnce()
		}
	}
}

func (a *Announcer) prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(a.cfg.VIPs))
	for _, v := range a.cfg.VIPs {
		out = append(out, announce.HostPrefix(v))
	}
	return out
}

// Announced returns the VIPs this node announces now (as host prefixes).
func (a *Announcer) Announced() []netip.Prefix {
	if !a.active.Load() {
		return []netip.Prefix{}
	}
	return a.prefixes()
}

// Set takes the VIPs over (Active) or lets them go. Taking over adds the
// addresses, then answers and sends the gratuitous burst; letting go stops
// answering at once, then removes the addresses. Setting Active again while
// active sends a new burst.
func (a *Announcer) Set(ctx context.Context, d announce.Desired) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		if !d.Active {
			return nil // released on Close
		}
		return errors.New("announcer closed")
	}
	if !d.Active && time.Now().Before(d.Drain) {
		// Stop claiming the VIPs but keep accepting what still comes.
		if a.active.Swap(false) {
			a.logger.Info("handing the VIPs over: no more ARP/NDP answers, accepting what still reaches this node until the successor's announcement has moved it",
				"vips", a.prefixes(), "until", d.Drain.Format("15:04:05.000"))
		}
		if a.refresh != nil {
			close(a.refresh)
			a.refresh = nil
		}
		return nil
	}
	if !d.Active {
		return a.release(ctx)
	}
	if a.refresh != nil {
		close(a.refresh)
		a.refresh = nil
	}
	if err := a.hold(ctx, true); err != nil {
		return err
	}
	if !a.active.Swap(true) {
		a.logger.Info("took the VIPs over", "vips", a.prefixes(), "term", d.Term)
	}
	a.refresh = make(chan struct{})
	a.wg.Add(1)
	go a.gratuitous(a.refresh)
	return nil
}

func (a *Announcer) release(ctx context.Context) error {
	was := a.active.Swap(false)
	if a.refresh != nil {
		close(a.refresh)
		a.refresh = nil
	}
	err := a.hold(ctx, false)
	if was {
		a.logger.Info("released the VIPs", "vips", a.prefixes())
	}
	return err
}

// addresses adds or removes the VIPs on the host, or has the script do it.
func (a *Announcer) addresses(ctx context.Context, add bool) error {
	var errs []error
	if a.cfg.Script != "" {
		verb := "remove"
		if add {
			verb = "add"
		}
		for _, v := range a.cfg.VIPs {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			out, err := exec.CommandContext(ctx, a.cfg.Script, verb, a.cfg.Interface, v.String()).CombinedOutput()
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s %s %s: %w: %s", a.cfg.Script, verb, a.cfg.Interface, v, err, strings.TrimSpace(string(out))))
			}
		}
		return errors.Join(errs...)
	}
	return announce.Hold(holder, a.cfg.VIPs, add)
}

// Close releases the VIPs and stops the responders. Safe to call twice.
func (a *Announcer) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := a.release(ctx)
	cancel()
	close(a.stop)
	a.mu.Unlock()
	a.wg.Wait()
	if a.arpc != nil {
		a.arpc.Close()
	}
	if a.ndpc != nil {
		a.ndpc.Close()
	}
	if a.onClose != nil {
		a.onClose()
	}
	return err
}

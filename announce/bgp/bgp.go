package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	apb "google.golang.org/protobuf/types/known/anypb"

	"github.com/raftvip/raftvip/announce"
)

// Modes for passive nodes.
const (
	// ModeActiveOnly: passive nodes withdraw the VIP (the default).
	ModeActiveOnly = "active-only"
	// ModeStandby: passive nodes announce it with a strictly worse preference,
	// for routers that need a path to be present.
	ModeStandby = "standby"
)

// Peer is one BGP neighbour (a router).
type Peer struct {
	Address   string        `json:"address"`
	ASN       uint32        `json:"asn"`
	Password  string        `json:"-"`                  // TCP MD5 (RFC 2385)
	Multihop  uint32        `json:"multihop,omitempty"` // eBGP multihop TTL; 0: directly connected
	Hold      time.Duration `json:"hold,omitempty"`     // default 90 s
	Keepalive time.Duration `json:"keepalive,omitempty"`
	Passive   bool          `json:"passive,omitempty"` // wait for the router to connect
}

// Config configures the BGP announcer.
type Config struct {
	ASN        uint32
	RouterID   string // an IPv4 address, unique in the cluster
	ListenPort int32  // 0: 179; -1: do not listen (connect out only)
	Peers      []Peer
	// VIPs are announced as host routes (/32, /128).
	VIPs []netip.Prefix
	// NextHop4 and NextHop6 override the next hop; empty: this node's
	// address on the session.
	NextHop4, NextHop6 string
	// Communities ("65000:100") and LargeCommunities ("65000:1:2") are
	// added to every announcement, besides the term's large community.
	Communities      []string
	LargeCommunities []string
	// Mode is ModeActiveOnly (default) or ModeStandby.
	Mode string
	// Holder is the interface that holds the VIPs while they are announced
	// ("lo" by default, or a dummy); "-" means raftvip does not hold them.
	Holder string
	// Active is checked before announcing.
	Active announce.ActiveFunc
	Logger *slog.Logger
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("BGP configuration")

// TermCommunity is the second field of the large community that carries
// the Raft term: ASN:TermCommunity:term.
const TermCommunity = 1

// Preferences derived from the term: a newer term always wins.
//   - MED (compared between paths from the same neighbouring AS, that is,
//     between the cluster's nodes, which share one ASN): MaxMED - term, so
//     lower for newer terms; standby paths use MaxMED.
//   - LOCAL_PREF (iBGP): StandbyLocalPref for standby paths, and
//     ActiveLocalPrefBase + term for the active one.
const (
	MaxMED              = 0xFFFFFFFF
	StandbyLocalPref    = 1
	ActiveLocalPrefBase = 100
)

// MED returns the MED of an active announcement in term.
func MED(term uint64) uint32 {
	if term >= MaxMED {
		return 0
	}
	return uint32(MaxMED - term)
}

// LocalPref returns the LOCAL_PREF of an active announcement in term.
func LocalPref(term uint64) uint32 {
	if term > MaxMED-ActiveLocalPrefBase {
		return MaxMED
	}
	return uint32(ActiveLocalPrefBase + term)
}

// Validate checks the configuration and names what is wrong.
func (c *Config) Validate() error {
	if c.ASN == 0 || c.ASN == 23456 {
		return fmt.Errorf("%w: local ASN %d is not usable", ErrConfig, c.ASN)
	}
	rid, err := netip.ParseAddr(c.RouterID)
	if err != nil || !rid.Is4() || rid.IsUnspecified() {
		return fmt.Errorf("%w: router ID %q must be an IPv4 address", ErrConfig, c.RouterID)
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		return fmt.Errorf("%w: listen port %d", ErrConfig, c.ListenPort)
	}
	switch c.Mode {
	case "":
		c.Mode = ModeActiveOnly
	case ModeActiveOnly, ModeStandby:
	default:
		return fmt.Errorf("%w: mode %q must be %s or %s", ErrConfig, c.Mode, ModeActiveOnly, ModeStandby)
	}
	if len(c.VIPs) == 0 {
		return fmt.Errorf("%w: no VIP", ErrConfig)
	}
	for _, v := range c.VIPs {
		if err := hostAddress(v); err != nil {
			return err
		}
	}
	if len(c.Peers) == 0 {
		return fmt.Errorf("%w: no peer", ErrConfig)
	}
	local := localAddrs()
	seen := map[string]bool{}
	for _, p := range c.Peers {
		a, err := netip.ParseAddr(p.Address)
		if err != nil {
			return fmt.Errorf("%w: peer address %q is not an IP address", ErrConfig, p.Address)
		}
		if local[a.Unmap()] {
			return fmt.Errorf("%w: peer %s is this node itself", ErrConfig, p.Address)
		}
		if seen[p.Address] {
			return fmt.Errorf("%w: peer %s is listed twice", ErrConfig, p.Address)
		}
		seen[p.Address] = true
		if p.ASN == 0 || p.ASN == 23456 {
			return fmt.Errorf("%w: peer %s ASN %d is not usable", ErrConfig, p.Address, p.ASN)
		}
		if p.Hold != 0 && (p.Hold < 3*time.Second || p.Hold > 65535*time.Second) {
			return fmt.Errorf("%w: peer %s hold time %v must be 0 or between 3s and 65535s", ErrConfig, p.Address, p.Hold)
		}
		if p.Keepalive != 0 && p.Hold != 0 && p.Keepalive >= p.Hold {
			return fmt.Errorf("%w: peer %s keepalive %v must be shorter than its hold time %v", ErrConfig, p.Address, p.Keepalive, p.Hold)
		}
		if p.Multihop > 255 {
			return fmt.Errorf("%w: peer %s multihop TTL %d is above 255", ErrConfig, p.Address, p.Multihop)
		}
	}
	for _, s := range c.Communities {
		if _, err := ParseCommunity(s); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	for _, s := range c.LargeCommunities {
		if _, err := ParseLargeCommunity(s); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	for _, nh := range []string{c.NextHop4, c.NextHop6} {
		if nh != "" {
			if _, err := netip.ParseAddr(nh); err != nil {
				return fmt.Errorf("%w: next hop %q is not an IP address", ErrConfig, nh)
			}
		}
	}
	if c.Holder == "" {
		c.Holder = "lo"
	}
	return nil
}

// hostAddress refuses a VIP that is not a unicast host address: multicast,
// loopback, link-local or unspecified, or the network or broadcast address
// of the prefix it was given with.
func hostAddress(v netip.Prefix) error {
	a := v.Addr().Unmap()
	if !a.IsGlobalUnicast() {
		return fmt.Errorf("%w: VIP %s is not a unicast host address", ErrConfig, v)
	}
	if bits := v.Bits(); bits >= 0 && bits < a.BitLen()-1 {
		if v.Masked().Addr() == a {
			return fmt.Errorf("%w: VIP %s is a network address, not a host address", ErrConfig, v)
		}
		if a.Is4() {
			b := a.As4()
			host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
			if mask := uint32(1)<<(32-bits) - 1; host&mask == mask {
				return fmt.Errorf("%w: VIP %s is the broadcast address of its network", ErrConfig, v)
			}
		}
	}
	return nil
}

func localAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}

// ParseCommunity parses "ASN:VALUE" (each 0-65535) into an RFC 1997 community.
func ParseCommunity(s string) (uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q must be ASN:VALUE, each 0 to 65535", s)
	}
	return uint32(x)<<16 | uint32(y), nil
}

// ParseLargeCommunity parses "GLOBAL:DATA1:DATA2" (RFC 8092).
func ParseLargeCommunity(s string) (*api.LargeCommunity, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return nil, fmt.Errorf("large community %q must be GLOBAL:DATA1:DATA2", s)
	}
	var v [3]uint32
	for i, x := range f {
		n, err := strconv.ParseUint(x, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("large community %q must be three numbers up to 4294967295", s)
		}
		v[i] = uint32(n)
	}
	return &api.LargeCommunity{GlobalAdmin: v[0], LocalData1: v[1], LocalData2: v[2]}, nil
}

// Announcer announces the VIPs to the routers from an embedded GoBGP.
type Announcer struct {
	cfg    Config
	logger *slog.Logger
	srv    *server.BgpServer

	mu      sync.Mutex
	state   string // "", "active", "standby"
	term    uint64
	paths   []*api.Path
	closed  bool
	holding bool

	announced atomic.Pointer[[]netip.Prefix]
	stopDamp  context.CancelFunc
	dampDone  chan struct{}
}

var _ announce.Announcer = (*Announcer)(nil)

// New validates the configuration, removes VIPs an earlier run left on the
// host, starts the BGP speaker and adds the peers. Nothing is announced
// until Set.
func New(ctx context.Context, cfg Config) (*Announcer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Active == nil {
		return nil, fmt.Errorf("%w: no active check", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Announcer{cfg: cfg, logger: cfg.Logger.With("component", "bgp")}
	empty := []netip.Prefix{}
	a.announced.Store(&empty)
	if cfg.Holder != "-" {
		announce.RemoveStale(cfg.VIPs, a.logger)
	}
	a.srv = server.NewBgpServer(server.LoggerOption(&logAdapter{a.logger}))
	go a.srv.Serve()
	port := cfg.ListenPort
	if port == 0 {
		port = 179
	}
	if err := a.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: cfg.ASN, RouterId: cfg.RouterID, ListenPort: port}}); err != nil {
		a.srv.Stop()
		return nil, fmt.Errorf("starting BGP: %w", err)
	}
	if err := importNothing(ctx, a.srv); err != nil {
		_ = a.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		a.srv.Stop()
		return nil, fmt.Errorf("setting BGP import policy: %w", err)
	}
	dctx, cancel := context.WithCancel(context.Background())
	a.stopDamp, a.dampDone = cancel, make(chan struct{})
	go func() {
		defer close(a.dampDone)
		a.dampFlaps(dctx)
	}()
	for _, p := range cfg.Peers {
		if err := a.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConf(p)}); err != nil {
			cancel()
			<-a.dampDone
			_ = a.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
			a.srv.Stop()
			return nil, fmt.Errorf("adding BGP peer %s: %w", p.Address, err)
		}
	}
	return a, nil
}

// importPolicy is the name of the global import policy: only the node's
// own paths enter its RIB.
const importPolicy = "raftvip-import-local-only"

// importNothing makes the RIB keep no route a router sends: raftvip
// announces, it does not route. Its own paths pass the import policy (it
// applies to them too); every other path is rejected.
func importNothing(ctx context.Context, srv *server.BgpServer) error {
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: importPolicy, Statements: []*api.Statement{{
		Name:       importPolicy + "-own",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
	}}}}); err != nil {
		return err
	}
	return srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_IMPORT,
		Policies: []*api.Policy{{Name: importPolicy}}, DefaultAction: api.RouteAction_REJECT,
	}})
}

func peerConf(p Peer) *api.Peer {
	hold, keep := uint64(90), uint64(30)
	if p.Hold > 0 {
		hold = uint64(p.Hold / time.Second)
		keep = hold / 3
	}
	if p.Keepalive > 0 {
		keep = uint64(p.Keepalive / time.Second)
	}
	fams := []*api.Family{{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, {Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}}
	var afs []*api.AfiSafi
	for _, f := range fams {
		afs = append(afs, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}})
	}
	peer := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address, PeerAsn: p.ASN, AuthPassword: p.Password},
		// A session that fails is retried after ConnectRetry; GoBGP holds
		// a reset peer idle for IdleHoldTimeAfterReset before that.
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: keep, ConnectRetry: 2, IdleHoldTimeAfterReset: 2}},
		Transport: &api.Transport{PassiveMode: p.Passive},
		AfiSafis:  afs,
	}
	if p.Multihop > 0 {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: p.Multihop}
	}
	return peer
}

// path builds the announcement of one VIP: active in term, or standby.
func (a *Announcer) path(v netip.Prefix, standby bool, term uint64) (*api.Path, error) {
	p := announce.HostPrefix(v)
	nlri, err := apb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	med, lp := MED(term), LocalPref(term)
	if standby {
		med, lp = MaxMED, StandbyLocalPref
	}
	comms := []uint32{}
	for _, s := range a.cfg.Communities {
		c, _ := ParseCommunity(s)
		comms = append(comms, c)
	}
	large := []*api.LargeCommunity{{GlobalAdmin: a.cfg.ASN, LocalData1: TermCommunity, LocalData2: uint32(min(term, MaxMED))}}
	for _, s := range a.cfg.LargeCommunities {
		c, _ := ParseLargeCommunity(s)
		large = append(large, c)
	}
	attrs := []*apb.Any{}
	for _, m := range []proto.Message{
		&api.OriginAttribute{Origin: 0},
		&api.MultiExitDiscAttribute{Med: med},
		&api.LocalPrefAttribute{LocalPref: lp},
		&api.LargeCommunitiesAttribute{Communities: large},
	} {
		x, err := anyOf(m)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, x)
	}
	if len(comms) > 0 {
		x, err := anyOf(&api.CommunitiesAttribute{Communities: comms})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, x)
	}
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Addr().Is4() {
		nh := a.cfg.NextHop4
		if nh == "" {
			nh = "0.0.0.0" // this node's address on each session
		}
		x, err := anyOf(&api.NextHopAttribute{NextHop: nh})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, x)
	} else {
		fam = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
		nh := a.cfg.NextHop6
		if nh == "" {
			nh = "::"
		}
		x, err := anyOf(&api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh}, Nlris: []*apb.Any{nlri}})
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, x)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: attrs}, nil
}

func anyOf(m proto.Message) (*apb.Any, error) { return apb.New(m) }

// Set announces the VIPs (active, in d.Term), or withdraws them or
// announces them as standby (passive, by Mode). Taking over adds the VIPs
// to the holder interface first; letting go withdraws first, then removes
// them. Set while active with a new term re-announces with the new term.
func (a *Announcer) Set(ctx context.Context, d announce.Desired) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		if !d.Active {
			return nil
		}
		return errors.New("announcer closed")
	}
	want := ""
	switch {
	case d.Active && a.cfg.Active():
		want = "active"
	case a.cfg.Mode == ModeStandby:
		want = "standby"
	}
	if want != "active" && a.state == "active" && time.Now().Before(d.Drain) {
		// Make-before-break: the path stays until the successor's, in a
		// newer term and so preferred, has replaced it at the routers.
		a.logger.Info("handing the VIPs over: the path stays until the successor's newer one replaces it",
			"term", a.term, "until", d.Drain.Format("15:04:05.000"))
		a.state = "draining"
		return nil
	}
	if a.state == "draining" && want != "active" && time.Now().Before(d.Drain) {
		return nil
	}
	if want == a.state && (want != "active" || d.Term == a.term) {
		return nil
	}
	if want != "active" && a.holding {
		// Withdraw (or demote) first, then stop accepting traffic.
		if err := a.announce(ctx, want, d.Term); err != nil {
			return err
		}
		err := announce.Hold(a.cfg.Holder, a.cfg.VIPs, false)
		a.holding = false
		return err
	}
	if want == "active" && !a.holding && a.cfg.Holder != "-" {
		if err := announce.Hold(a.cfg.Holder, a.cfg.VIPs, true); err != nil {
			return err
		}
		a.holding = true
	}
	return a.announce(ctx, want, d.Term)
}

// announce replaces what this node announces with state's paths.
func (a *Announcer) announce(ctx context.Context, state string, term uint64) error {
	var next []*api.Path
	if state != "" {
		for _, v := range a.cfg.VIPs {
			p, err := a.path(v, state == "standby", term)
			if err != nil {
				return err
			}
			next = append(next, p)
		}
	}
	var errs []error
	// Add the new paths first (they replace the old ones for the same
	// prefix), then withdraw what is no longer announced.
	for _, p := range next {
		if _, err := a.srv.AddPath(ctx, &api.AddPathRequest{Path: p}); err != nil {
			errs = append(errs, fmt.Errorf("announcing: %w", err))
		}
	}
	if len(next) == 0 {
		for _, p := range a.paths {
			if err := a.srv.DeletePath(ctx, &api.DeletePathRequest{Path: p}); err != nil {
				errs = append(errs, fmt.Errorf("withdrawing: %w", err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if state != a.state || term != a.term {
		a.logger.Info("BGP announcement changed", "state", orNone(state), "term", term, "vips", a.hostPrefixes())
	}
	a.paths, a.state, a.term = next, state, term
	ann := []netip.Prefix{}
	if state == "active" {
		ann = a.hostPrefixes()
	}
	a.announced.Store(&ann)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "withdrawn"
	}
	return s
}

func (a *Announcer) hostPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(a.cfg.VIPs))
	for i, v := range a.cfg.VIPs {
		out[i] = announce.HostPrefix(v)
	}
	return out
}

// Announced returns the VIPs announced as the active node.
func (a *Announcer) Announced() []netip.Prefix {
	return append([]netip.Prefix(nil), *a.announced.Load()...)
}

// PeerStatus is one BGP session as this node sees it.
type PeerStatus struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	State   string `json:"state"` // idle, connect, active, opensent, openconfirm, established
	Uptime  string `json:"uptime,omitempty"`
	// Received counts the paths the router sent on this session (held in
	// GoBGP's Adj-RIB-In; none of them enters the RIB).
	Received uint64 `json:"received"`
}

// Status is what this node's BGP speaker does: its sessions and what it
// announces.
type Status struct {
	ASN       uint32       `json:"asn"`
	RouterID  string       `json:"router_id"`
	Mode      string       `json:"mode"`
	Announces string       `json:"announces"` // active, standby, withdrawn
	Term      uint64       `json:"term,omitempty"`
	VIPs      []string     `json:"vips"`
	Peers     []PeerStatus `json:"peers"`
	// RIBPaths counts the paths in the node's RIB, both families: its own
	// only, since nothing a router sends is imported.
	RIBPaths uint64 `json:"rib_paths"`
}

// Status lists the sessions and the announcement.
func (a *Announcer) Status(ctx context.Context) Status {
	a.mu.Lock()
	st := Status{ASN: a.cfg.ASN, RouterID: a.cfg.RouterID, Mode: a.cfg.Mode, Announces: orNone(a.state), Term: a.term, Peers: []PeerStatus{}}
	a.mu.Unlock()
	for _, p := range a.hostPrefixes() {
		st.VIPs = append(st.VIPs, p.String())
	}
	_ = a.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		ps := PeerStatus{Address: p.GetConf().GetNeighborAddress(), ASN: p.GetConf().GetPeerAsn(),
			State: strings.ToLower(strings.TrimPrefix(p.GetState().GetSessionState().String(), "SESSION_STATE_"))}
		if up := p.GetTimers().GetState().GetUptime(); up != nil && ps.State == "established" {
			ps.Uptime = time.Since(up.AsTime()).Round(time.Second).String()
		}
		for _, af := range p.GetAfiSafis() {
			ps.Received += af.GetState().GetReceived()
		}
		st.Peers = append(st.Peers, ps)
	})
	for _, f := range []*api.Family{{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, {Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}} {
		if t, err := a.srv.GetTable(ctx, &api.GetTableRequest{TableType: api.TableType_GLOBAL, Family: f}); err == nil {
			st.RIBPaths += t.NumPath
		}
	}
	return st
}

// Close withdraws everything, releases the VIPs and closes the sessions
// cleanly (a BGP NOTIFICATION Cease to each peer). Safe to call twice.
func (a *Announcer) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if a.state != "" {
		errs = append(errs, a.announce(ctx, "", 0))
	}
	if a.holding {
		errs = append(errs, announce.Hold(a.cfg.Holder, a.cfg.VIPs, false))
		a.holding = false
	}
	a.stopDamp()
	<-a.dampDone
	a.shutdownPeers(ctx)
	errs = append(errs, a.srv.StopBgp(ctx, &api.StopBgpRequest{}))
	a.srv.Stop()
	return errors.Join(errs...)
}

// shutdownPeers ends every session with a NOTIFICATION Cease,
// Administrative Shutdown (subcode 2, RFC 4486) and a shutdown
// communication (RFC 9003), and waits (within ctx) until no session is
// established, so that StopBgp, which would send subcode 3 (Peer
// De-configured), finds none to close.
func (a *Announcer) shutdownPeers(ctx context.Context) {
	for _, p := range a.cfg.Peers {
		if err := a.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: p.Address, Communication: "raftvip agent stopping"}); err != nil {
			a.logger.Warn("shutting BGP session down", "peer", p.Address, "err", err)
		}
	}
	wait := time.NewTicker(10 * time.Millisecond)
	defer wait.Stop()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		up := 0
		_ = a.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.State != nil && p.State.SessionState == api.PeerState_ESTABLISHED {
				up++
			}
		})
		if up == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
	}
}

// logAdapter sends GoBGP's log to slog.
type logAdapter struct{ l *slog.Logger }

func attrs(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}

func (l *logAdapter) Panic(msg string, f gobgplog.Fields) { l.l.Error(msg, attrs(f)...); panic(msg) }
func (l *logAdapter) Fatal(msg string, f gobgplog.Fields) { l.l.Error(msg, attrs(f)...) }
func (l *logAdapter) Error(msg string, f gobgplog.Fields) { l.l.Error(msg, attrs(f)...) }
func (l *logAdapter) Warn(msg string, f gobgplog.Fields)  { l.l.Warn(msg, attrs(f)...) }
func (l *logAdapter) Info(msg string, f gobgplog.Fields)  { l.l.Info(msg, attrs(f)...) }
func (l *logAdapter) Debug(msg string, f gobgplog.Fields) { l.l.Debug(msg, attrs(f)...) }
func (l *logAdapter) SetLevel(gobgplog.LogLevel)          {}
func (l *logAdapter) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }

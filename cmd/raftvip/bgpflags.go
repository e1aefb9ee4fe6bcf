package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/raftvip/raftvip/announce"
	"github.com/raftvip/raftvip/announce/bgp"
	"github.com/raftvip/raftvip/consensus"
)

// parsePeer reads "ADDR,asn=N[,password=P][,multihop=TTL][,hold=D][,keepalive=D][,passive]".
func parsePeer(s string) (bgp.Peer, error) {
	f := strings.Split(s, ",")
	p := bgp.Peer{Address: strings.TrimSpace(f[0])}
	bad := func(why string) (bgp.Peer, error) {
		return bgp.Peer{}, fmt.Errorf("--bgp-peer %q: %s (form: ADDR,asn=N[,password=P][,multihop=TTL][,hold=90s][,keepalive=30s][,passive])", s, why)
	}
	if _, err := netip.ParseAddr(p.Address); err != nil {
		return bad("the first field must be the router's IP address")
	}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		var err error
		switch k {
		case "asn":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			p.ASN = uint32(n)
		case "password":
			p.Password = v
		case "multihop":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 8)
			p.Multihop = uint32(n)
		case "hold":
			p.Hold, err = time.ParseDuration(v)
		case "keepalive":
			p.Keepalive, err = time.ParseDuration(v)
		case "passive":
			p.Passive = true
		default:
			return bad("unknown setting " + strconv.Quote(k))
		}
		if err != nil {
			return bad(fmt.Sprintf("%s=%q is not valid", k, v))
		}
	}
	if p.ASN == 0 {
		return bad("asn= is required")
	}
	return p, nil
}

// parseVIP reads a VIP: an address with its subnet's prefix length, or,
// for BGP, a bare address.
func parseVIP(s string, bare bool) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && bare {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if bare {
		return netip.Prefix{}, fmt.Errorf("--vip %q must be an IP address (or address/prefix)", s)
	}
	return netip.Prefix{}, fmt.Errorf("--vip %q must be an address with its subnet's prefix length, such as 198.18.0.100/24", s)
}

// newBGP starts the BGP announcer for --vip-mode bgp.
func newBGP(ctx context.Context, logger *slog.Logger, o *agentOptions, node *consensus.Node, vips []netip.Prefix) (*bgp.Announcer, error) {
	addr := node.HAState().ConsensusAddr
	if addr == "" {
		addr = o.consensusAddr
	}
	cfg, err := o.bgpConfig(addr, vips)
	if err != nil {
		return nil, err
	}
	cfg.Active, cfg.Logger = node.IsActive, logger
	if err := checkRouterID(ctx, node, cfg.RouterID); err != nil {
		return nil, err
	}
	a, err := bgp.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	node.SetStatusExtra(func() any {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return a.Status(ctx)
	})
	return a, nil
}

// bgpConfig reads the BGP flags into the announcer's configuration (all but
// Active and Logger), with the router ID defaulting to consensusAddr's
// IPv4 address. It opens nothing, so the agent checks the flags before it
// opens anything (agentOptions.config), and again with the consensus
// address ha-state.json holds when it starts the announcer.
func (o *agentOptions) bgpConfig(consensusAddr string, vips []netip.Prefix) (bgp.Config, error) {
	asn, err := strconv.ParseUint(o.bgpASN, 10, 32)
	if err != nil || asn == 0 {
		return bgp.Config{}, fmt.Errorf("--bgp-asn %q must be a number from 1 to 4294967295", o.bgpASN)
	}
	rid := o.bgpRouterID
	if rid == "" {
		host, _, _ := net.SplitHostPort(consensusAddr)
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
			rid = host
		} else {
			return bgp.Config{}, fmt.Errorf("--bgp-router-id is required when the consensus address is not IPv4")
		}
	}
	cfg := bgp.Config{ASN: uint32(asn), RouterID: rid, ListenPort: int32(o.bgpListenPort), VIPs: vips, Mode: o.bgpMode,
		Communities: o.bgpCommunities, LargeCommunities: o.bgpLarge, Holder: o.bgpHolder}
	for _, nh := range o.bgpNextHops {
		a, err := netip.ParseAddr(nh)
		if err != nil {
			return bgp.Config{}, fmt.Errorf("--bgp-next-hop %q is not an IP address", nh)
		}
		if a.Is4() {
			cfg.NextHop4 = nh
		} else {
			cfg.NextHop6 = nh
		}
	}
	for _, s := range o.bgpPeers {
		p, err := parsePeer(s)
		if err != nil {
			return bgp.Config{}, err
		}
		cfg.Peers = append(cfg.Peers, p)
	}
	if err := cfg.Validate(); err != nil {
		return bgp.Config{}, fmt.Errorf("the --bgp-* flags: %w", err)
	}
	return cfg, nil
}

// checkRouterID refuses a router ID that another reachable member uses.
func checkRouterID(ctx context.Context, node *consensus.Node, rid string) error {
	if !node.HAState().Valid {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cs, err := node.ClusterStatus(ctx)
	if err != nil {
		return nil // no cluster view yet: the routers will refuse a duplicate
	}
	for _, m := range cs.Members {
		if m.ID == node.ID() || m.Status == nil {
			continue
		}
		if ann, ok := m.Status.Announcer.(map[string]any); ok && ann["router_id"] == rid {
			return fmt.Errorf("--bgp-router-id %s is already used by member %s; every node needs its own", rid, m.ID)
		}
	}
	return nil
}

var _ announce.Announcer = (*bgp.Announcer)(nil)

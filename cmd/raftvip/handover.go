package main

import (
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/raftvip/raftvip/announce/fence"
	"github.com/raftvip/raftvip/consensus"
	"github.com/vishvananda/netlink"
)

// strayGrace is added to the lease for how long a new active node passes
// on the traffic of the previous owner's connections: the old node's drain
// ends at most one lease after the hand-over began.
const strayGrace = 50 * time.Millisecond

// forwardStrays returns what the agent calls when this node takes the VIPs
// over from prev (a member ID): the fence passes on, for one lease, the VIP
// segments of connections prev accepted before the VIP moved (see
// fence.Forward), when prev's consensus address is an on-link neighbour.
// Nil without a fence.
func forwardStrays(logger *slog.Logger, node *consensus.Node, fen *fence.Fence) func(prev string) {
	if fen == nil {
		return nil
	}
	return func(prev string) {
		ms, err := node.Store().Members()
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.ID != prev {
				continue
			}
			host, _, err := net.SplitHostPort(m.ConsensusAddr)
			if err != nil {
				return
			}
			addr, err := netip.ParseAddr(host)
			if err != nil {
				return
			}
			routes, err := netlink.RouteGet(addr.AsSlice())
			if err != nil || len(routes) == 0 || routes[0].Gw != nil {
				logger.Debug("not passing on the previous owner's connections: it is not an on-link neighbour", "prev", prev, "addr", addr)
				return
			}
			link, err := netlink.LinkByIndex(routes[0].LinkIndex)
			if err != nil {
				return
			}
			until := time.Now().Add(node.Timing().ActiveLease + strayGrace)
			if err := fen.Forward(addr, link.Attrs().Name, until); err != nil {
				logger.Warn("passing on the previous owner's connections", "prev", prev, "err", err)
				return
			}
			logger.Info("passing the VIP traffic of the previous owner's connections on to it", "prev", prev, "addr", addr,
				"dev", link.Attrs().Name, "until", until.Format("15:04:05.000"))
			return
		}
	}
}

package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/raftvip/raftvip/announce/bgp"
)

// readiness keeps, in the background, whether this node's announcer can do
// its job: the VirtInterface up with a carrier (ARP/NDP), at least one BGP
// session established (BGP). The consensus node reads it (cheaply) to hand
// leadership to a ready voter; Close stops the watcher and waits for it.
type readiness struct {
	why    atomic.Pointer[string]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watchReadiness starts the watcher: check returns "" when ready, else why
// not, and is called every period.
func watchReadiness(check func(context.Context) string, period time.Duration) *readiness {
	ctx, cancel := context.WithCancel(context.Background())
	r := &readiness{cancel: cancel}
	first := check(ctx)
	r.why.Store(&first)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			why := check(ctx)
			r.why.Store(&why)
		}
	}()
	return r
}

// NotReady is the last check's answer.
func (r *readiness) NotReady() string { return *r.why.Load() }

// Close stops the watcher; the node then counts as ready (its last word
// would be stale). Safe on nil.
func (r *readiness) Close() {
	if r == nil {
		return
	}
	ready := ""
	r.why.Store(&ready)
	r.cancel()
	r.wg.Wait()
}

// linkReady checks the interface that carries the VIP in ARP/NDP mode.
func linkReady(iface string) func(context.Context) string {
	return func(context.Context) string {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return fmt.Sprintf("VirtInterface %s: %v", iface, err)
		}
		a := l.Attrs()
		switch {
		case a.Flags&net.FlagUp == 0:
			return fmt.Sprintf("VirtInterface %s is down", iface)
		case a.OperState == netlink.OperDown || a.OperState == netlink.OperLowerLayerDown:
			return fmt.Sprintf("VirtInterface %s has no carrier (%s)", iface, a.OperState)
		}
		return ""
	}
}

// bgpReady checks that at least one BGP session is established.
func bgpReady(b *bgp.Announcer) func(context.Context) string {
	return func(ctx context.Context) string {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st := b.Status(ctx)
		up := 0
		for _, p := range st.Peers {
			if p.State == "established" {
				up++
			}
		}
		if up == 0 {
			return fmt.Sprintf("no BGP session established (0 of %d routers)", len(st.Peers))
		}
		return ""
	}
}

package main

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestLinkReady: the ARP/NDP readiness check follows the VirtInterface:
// missing, administratively down, up without a carrier, and up.
func TestLinkReady(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestLinkReady needs root (a network namespace of its own)")
		}
		t.Skip("needs root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine, and its namespace with it
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		check := linkReady("vip0")
		if why := check(context.Background()); !strings.Contains(why, "vip0") {
			t.Errorf("missing link: %q", why)
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vip0"}, PeerName: "vip1"}); err != nil {
			t.Errorf("adding a veth pair: %v", err)
			return
		}
		if why := check(context.Background()); !strings.Contains(why, "is down") {
			t.Errorf("link down: %q", why)
		}
		// Up, with its peer down: no carrier.
		l, _ := netlink.LinkByName("vip0")
		if err := netlink.LinkSetUp(l); err != nil {
			t.Errorf("link up: %v", err)
			return
		}
		if why := check(context.Background()); !strings.Contains(why, "no carrier") {
			t.Errorf("link without carrier: %q", why)
		}
		peer, _ := netlink.LinkByName("vip1")
		if err := netlink.LinkSetUp(peer); err != nil {
			t.Errorf("peer up: %v", err)
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for why := check(context.Background()); why != ""; why = check(context.Background()) {
			if time.Now().After(deadline) {
				t.Errorf("link up: still %q", why)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-done
}

package fence

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNewNetNS runs fn on a thread moved into a network namespace of its own
// (with lo up); the thread ends with the test goroutine, and the namespace
// with it.
func inNewNetNS(t *testing.T, fn func(nsfd int)) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the fence test needs root (a network namespace and nftables)")
		}
		t.Skip("needs root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Errorf("lo up: %v", err)
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("opening the namespace: %v", err)
			return
		}
		defer unix.Close(fd)
		fn(fd)
	}()
	<-done
}

// reachable dials addr once with a short timeout (a dropped SYN times out).
func reachable(addr string) bool {
	d := net.Dialer{Timeout: 60 * time.Millisecond}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestFenceExpiresInKernel: with the fence installed, a VIP accepts
// connections only while the lease is held, stops on its own when the lease
// runs out (no call made), at once when withdrawn, and again accepts when
// the fence is closed and its table gone.
func TestFenceExpiresInKernel(t *testing.T) {
	inNewNetNS(t, func(nsfd int) {
		lo, _ := netlink.LinkByName("lo")
		for _, a := range []string{"198.18.0.100/32", "2001:db8::100/128"} {
			addr, _ := netlink.ParseAddr(a)
			addr.Flags = unix.IFA_F_NODAD
			if err := netlink.AddrAdd(lo, addr); err != nil {
				t.Fatalf("adding %s: %v", a, err)
			}
		}
		var addrs []string
		for _, h := range []string{"198.18.0.100", "2001:db8::100"} {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			addrs = append(addrs, ln.Addr().String())
		}
		f, err := New(Config{VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32"), netip.MustParsePrefix("2001:db8::100/128")}, NetNS: nsfd})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, a := range addrs {
			if reachable(a) {
				t.Fatalf("%s reachable with the lease not held", a)
			}
		}
		// Held for 400 ms: reachable, then unreachable once it ends, with
		// nothing done.
		until := time.Now().Add(400 * time.Millisecond)
		if err := f.Hold(until); err != nil {
			t.Fatal(err)
		}
		if s := f.State(); !s.Held || s.Left <= 0 || s.Err != "" {
			t.Fatalf("state %+v", s)
		}
		for _, a := range addrs {
			if !reachable(a) {
				t.Fatalf("%s unreachable with the lease held", a)
			}
		}
		var end time.Time
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			if !reachable(addrs[0]) {
				end = time.Now()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if end.IsZero() {
			t.Fatal("the VIP stayed reachable 3 s after the lease ended")
		}
		// The kernel may stop a little early (the margin), never late: a
		// dial that failed began at most 60 ms before end.
		if late := end.Sub(until) - 60*time.Millisecond; late > 30*time.Millisecond {
			t.Fatalf("the kernel accepted VIP traffic %v after the lease", late)
		}
		if reachable(addrs[1]) {
			t.Fatal("IPv6 VIP reachable after the lease")
		}
		t.Logf("lease ended at +%v of its end (dial timeout 60 ms)", end.Sub(until))
		// A renewal moves the end; a withdrawal ends it at once; a lease
		// renewed before each end never lapses.
		renewAndWithdraw(t, f, addrs[0])
		keptAlive(t, f, addrs[0])
		forwardLifecycle(t, f)
		// A second fence replaces the first one's table (a restart after
		// kill -9), starting with the lease not held.
		if err := f.Hold(time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		g, err := New(Config{VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}, NetNS: nsfd})
		if err != nil {
			t.Fatalf("replacing a left-over table: %v", err)
		}
		if reachable(addrs[0]) {
			t.Fatal("reachable through a left-over table's lease")
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if err := g.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		if err := g.Hold(time.Now().Add(time.Second)); err == nil {
			t.Fatal("Hold after Close did not fail")
		}
		if !reachable(addrs[0]) {
			t.Fatal("unreachable after the fence was removed")
		}
	})
}

// renewAndWithdraw holds the lease, renews it for longer, and withdraws it.
func renewAndWithdraw(t *testing.T, f *Fence, addr string) {
	t.Helper()
	if err := f.Hold(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.Hold(time.Now().Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if s := f.State(); s.Left < time.Minute {
		t.Fatalf("renewed lease has %v left", s.Left)
	}
	// Expires, not Timeout: a kernel can take the new timeout and keep the
	// old expiry (Linux 6.18 does, on an add without an expiration).
	if els, err := f.conn.GetSetElements(f.sets[0].lease); err != nil || len(els) != 1 || els[0].Expires < time.Minute {
		t.Fatalf("the kernel holds %+v (%v), want one element that expires after the renewed end", els, err)
	}
	if !reachable(addr) {
		t.Fatal("unreachable after renewal")
	}
	if err := f.Hold(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if reachable(addr) || f.State().Held {
		els, err := f.conn.GetSetElements(f.sets[0].lease)
		t.Fatalf("reachable after the lease was withdrawn (the kernel holds %+v, %v)", els, err)
	}
}

// keptAlive renews a short lease well before each end, as the active node
// does, for a second, dialling all the while: the kernel must never let the
// lease lapse in between (an update that kept the old expiry dropped one
// connection in every lease).
func keptAlive(t *testing.T, f *Fence, addr string) {
	t.Helper()
	const lease = 150 * time.Millisecond
	if err := f.Hold(time.Now().Add(lease)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(lease / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := f.Hold(time.Now().Add(lease)); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	failed, dials := 0, 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); dials++ {
		if !reachable(addr) {
			failed++
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	<-done
	if failed > 0 {
		t.Fatalf("%d of %d dials failed while the lease was renewed every %v", failed, dials, lease/10)
	}
	if err := f.Hold(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// handoverTables lists the fence's hand-over tables in the kernel.
func handoverTables(t *testing.T, f *Fence) []string {
	t.Helper()
	ts, err := f.conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range ts {
		if tb.Name == f.cfg.Table+"-handover" {
			out = append(out, fmt.Sprintf("%d/%s", tb.Family, tb.Name))
		}
	}
	return out
}

// forwardLifecycle: a Forward installs its table, a renewal before its end
// keeps it, the first Hold after its end removes it, and so do a
// withdrawal and a second Forward of the other family.
func forwardLifecycle(t *testing.T, f *Fence) {
	t.Helper()
	if err := f.Hold(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(200 * time.Millisecond)
	if err := f.Forward(netip.MustParseAddr("198.18.0.1"), "lo", until); err != nil {
		t.Fatal(err)
	}
	if got := handoverTables(t, f); len(got) != 1 || !f.Forwarding() {
		t.Fatalf("after Forward: hand-over tables %v", got)
	}
	if err := f.Hold(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := handoverTables(t, f); len(got) != 1 {
		t.Fatalf("a renewal before the forwarding's end removed it: %v", got)
	}
	for time.Now().Before(until) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Hold(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := handoverTables(t, f); len(got) != 0 || f.Forwarding() {
		t.Fatalf("the forwarding outlived its end: %v", got)
	}
	if err := f.Forward(netip.MustParseAddr("198.18.0.1"), "lo", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.Forward(netip.MustParseAddr("2001:db8::1"), "lo", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := handoverTables(t, f); len(got) != 1 || got[0] != fmt.Sprintf("%d/%s-handover", nftables.TableFamilyIPv6, f.cfg.Table) {
		t.Fatalf("a second Forward did not replace the first: %v", got)
	}
	if err := f.Hold(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := handoverTables(t, f); len(got) != 0 {
		t.Fatalf("a withdrawal left the forwarding: %v", got)
	}
	if err := f.Forward(netip.MustParseAddr("198.18.0.1"), "no-such-link", time.Now().Add(time.Minute)); err == nil {
		t.Fatal("Forward over a missing link did not fail")
	}
}

package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
)

// single starts one bootstrapped node on h with the given extra flags.
func single(t *testing.T, h *Host, extra ...string) *Proc {
	args := append([]string{binary, "agent", "--data-dir", t.TempDir(), "--node-id", h.Name, "--bootstrap",
		"--consensus-addr", h.Addr4 + ":8093", "--api-addr", "0.0.0.0:8092", "--api-url", "https://" + h.Addr4 + ":8092",
		"--virt-interface", "eth0"}, extra...)
	return h.Start("agent", args...)
}

func waitOutput(t *testing.T, p *Proc, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(strings.Join(p.Lines(), "\n"), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", p.Name, want, within, strings.Join(p.Lines(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVIPOutsideSubnetRefused: a VIP that is not on VirtInterface's network
// stops the agent at start-up with a message that says so.
func TestVIPOutsideSubnetRefused(t *testing.T) {
	n := New(t)
	h := n.AddHost("n1", 1)
	p := single(t, h, "--vip", "198.19.5.5/24")
	waitOutput(t, p, "not in a subnet of eth0", 10*time.Second)
	waitExit(t, p, 10*time.Second, "with a VIP outside its subnet")
}

// waitExit fails the test unless p exits within the time given.
func waitExit(t *testing.T, p *Proc, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("%s kept running %s", p.Name, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStaleVIPRemoved: a VIP that an interrupted stop left on an interface
// is removed when the agent starts, and the VIP then lives only on lo.
func TestStaleVIPRemoved(t *testing.T) {
	n := New(t)
	h := n.AddHost("n1", 1)
	h.MustRun("ip", "addr", "add", vip4+"/24", "dev", "eth0")
	single(t, h, "--vip", vip4+"/24")
	deadline := time.Now().Add(15 * time.Second)
	for {
		eth0 := h.MustRun("ip", "-4", "addr", "show", "dev", "eth0")
		lo := h.MustRun("ip", "-4", "addr", "show", "dev", "lo")
		if !strings.Contains(eth0, vip4) && strings.Contains(lo, vip4+"/32") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale VIP not cleaned up:\neth0: %s\nlo: %s", eth0, lo)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestVirtInterfaceScript: with a VirtInterfaceScript the script adds and
// removes the VIP (called as SCRIPT add|remove IFACE ADDR/PREFIX) and
// clients reach the VIP through it.
func TestVirtInterfaceScript(t *testing.T) {
	n := New(t)
	h := n.AddHost("n1", 1)
	client := n.AddHost("client", 10)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "vip.sh")
	body := fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\ncase $1 in add) ip addr replace $3 dev $2 ;; remove) ip addr del $3 dev $2 ;; esac\n", calls)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// Also the API in plain HTTP, as asked for (--api-plain).
	p := single(t, h, "--vip", vip4+"/24", "--virt-interface-script", script, "--api-plain", "--api-url", "http://"+h.Addr4+":8092")
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := client.Run(binary, "debug", "probe", "--url", "http://"+vip4+":8092"+route.HANode, "--duration", "1ms")
		if strings.Contains(out, `"node":"n1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VIP was not reachable through the script's address: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !p.Term(15 * time.Second) {
		t.Fatal("the agent did not stop on SIGTERM")
	}
	b, _ := os.ReadFile(calls)
	want := "add eth0 " + vip4 + "/24\nremove eth0 " + vip4 + "/24\n"
	if !strings.HasSuffix(string(b), want) {
		t.Fatalf("script calls %q, want them to end with %q", b, want)
	}
	if out := h.MustRun("ip", "-4", "addr", "show", "dev", "eth0"); strings.Contains(out, vip4) {
		t.Fatalf("the VIP is still on eth0 after the stop: %s", out)
	}
}

// TestHealReannounces: when a passive node's partition heals, the active
// node (still active) announces the VIP again at once, without waiting for
// its periodic refresh.
func TestHealReannounces(t *testing.T) {
	c := newCluster(t, "default", "--arp-refresh", "-1s")
	var active, follower int = -1, -1
	name := c.viaVIP("https://" + vip4 + ":8092" + route.HANode)
	for i, h := range c.nodes {
		if h.Name == name {
			active = i
		} else if follower < 0 {
			follower = i
		}
	}
	if active < 0 {
		t.Fatal("no node answers on the VIP")
	}
	mac := c.nodes[active].MAC()
	watch := c.client.Start("arpwatch", binary, "debug", "arpwatch", "--vip", vip4, "--duration", "60s")
	f := c.nodes[follower]
	Partition([]*Host{f}, c.others(follower))
	// Wait until the active node's Raft has counted failed heartbeats.
	waitOutput(t, c.agents[active], "failed to heartbeat", 15*time.Second)
	healed := time.Now()
	Heal([]*Host{f}, c.others(follower))
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, a := range parse[ARPLine](t, watch.Lines()) {
			if a.MAC == mac && a.T > healed.UnixNano() {
				t.Logf("the active node re-announced the VIP %v after the heal", time.Duration(a.T-healed.UnixNano()).Round(time.Millisecond))
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no announcement from the active node (%s) within 2s of the heal: %v", mac, watch.Lines())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

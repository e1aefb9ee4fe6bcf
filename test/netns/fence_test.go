package netns

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
)

// The test binary doubles as the user's own service beside raftvip: run
// with serveEnv set, it answers HTTP on that address with its node's name
// in X-Raftvip-Node, and nothing else.
const (
	serveEnv     = "RAFTVIP_TEST_SERVE"
	serveNameEnv = "RAFTVIP_TEST_SERVE_NAME"
	servicePort  = "8080"
)

func serveService(addr, name string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Raftvip-Node", name)
		_, _ = w.Write([]byte(name + "\n"))
	})
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// startServices runs the service on every node, on all its addresses (the
// VIP included, when the node holds it).
func (c *cluster) startServices() {
	for _, h := range c.nodes {
		h.Start("service", "env", serveEnv+"=0.0.0.0:"+servicePort, serveNameEnv+"="+h.Name, os.Args[0])
	}
}

// lateAccept measures, once, how long after the active agent was killed or
// frozen its node still accepted a new connection to the VIP: the client's
// neighbour entry for the VIP is pinned to that node's MAC, so that no
// gratuitous ARP from the new active node can move the client away.
func (c *cluster) lateAccept(freeze bool) (old int, late time.Duration) {
	t := c.t
	t.Helper()
	old = -1
	deadline := time.Now().Add(20 * time.Second)
	for old < 0 && time.Now().Before(deadline) {
		name := c.viaVIP("https://" + vip4 + ":8092" + route.HANode)
		for i, h := range c.nodes {
			if h.Name == name {
				old = i
			}
		}
	}
	if old < 0 {
		t.Fatal("no node answers on the VIP")
	}
	h := c.nodes[old]
	c.client.MustRun("ip", "neigh", "replace", vip4, "lladdr", h.MAC(), "dev", "eth0", "nud", "permanent")
	defer c.client.MustRun("ip", "neigh", "del", vip4, "dev", "eth0")
	probe := c.client.Start("probe", binary, "debug", "probe", "--url", "http://"+vip4+":"+servicePort+"/", "--interval", "10ms", "--duration", "2s")
	waitLines(t, probe, 20, 5*time.Second)
	failed := time.Now()
	if freeze {
		c.agents[old].Stop()
	} else {
		c.agents[old].Kill()
	}
	for deadline := time.Now().Add(10 * time.Second); probe.Running(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the probe did not end")
		}
	}
	served := 0
	for _, r := range parse[ProbeLine](t, probe.Lines()) {
		if r.Status != 200 || r.Node != h.Name {
			continue
		}
		served++
		if d := time.Duration(r.T - failed.UnixNano()); d > late {
			late = d
		}
	}
	if served < 10 {
		t.Fatalf("%s's service answered only %d probes on the VIP, before the failure included", h.Name, served)
	}
	// Back to three healthy members.
	if freeze {
		c.agents[old].Cont()
	} else {
		c.start(old)
	}
	c.waitAPI(old, 20*time.Second)
	return old, late
}

// runFence measures lateAccept n times on one cluster.
func runFence(t *testing.T, freeze bool, n int, extra ...string) []time.Duration {
	c := newCluster(t, "default", extra...)
	c.startServices()
	var lates []time.Duration
	for i := 0; i < n; i++ {
		old, late := c.lateAccept(freeze)
		t.Logf("run %d: n%d accepted a VIP connection %v after the failure", i+1, old+1, late.Round(time.Millisecond))
		lates = append(lates, late)
	}
	slices.Sort(lates)
	return lates
}

// fenceBound is the default profile's active lease plus 50 ms: after it, the
// old node's kernel must refuse VIP traffic.
const fenceBound = 250*time.Millisecond + 50*time.Millisecond

func testFence(t *testing.T, freeze bool) {
	lates := runFence(t, freeze, 10)
	t.Logf("late accepts, 10 runs: min %v, median %v, max %v (bound %v)", lates[0].Round(time.Millisecond),
		lates[len(lates)/2].Round(time.Millisecond), lates[len(lates)-1].Round(time.Millisecond), fenceBound)
	if lates[len(lates)-1] > fenceBound {
		t.Fatalf("the old node accepted VIP connections up to %v after the failure (bound %v)", lates[len(lates)-1], fenceBound)
	}
	// The same measurement without the fence: the old node accepts for as
	// long as the client's neighbour entry points at it.
	off := runFence(t, freeze, 1, "--fence=false")
	t.Logf("without the fence: accepted %v after the failure", off[0].Round(time.Millisecond))
	if off[0] <= time.Second {
		t.Fatalf("without the fence the old node stopped accepting %v after the failure: the measurement cannot tell a fence from none", off[0])
	}
}

// TestFenceKill9: after kill -9 of the active agent, its node accepts no
// VIP connection later than its lease plus 50 ms, with nothing left to act
// but the kernel.
func TestFenceKill9(t *testing.T) { testFence(t, false) }

// TestFenceSIGSTOP: the same for a frozen agent.
func TestFenceSIGSTOP(t *testing.T) { testFence(t, true) }

// TestFenceUnavailableRefused: where the fence cannot be installed (here:
// no CAP_NET_ADMIN, as on a host without nftables), the agent stops at
// start-up with a message that says how to run without it.
func TestFenceUnavailableRefused(t *testing.T) {
	n := New(t)
	h := n.AddHost("n1", 1)
	args := append([]string{"setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin"},
		binary, "agent", "--data-dir", t.TempDir(), "--node-id", h.Name, "--bootstrap",
		"--consensus-addr", h.Addr4+":8093", "--api-addr", "0.0.0.0:8092", "--api-url", "https://"+h.Addr4+":8092",
		"--virt-interface", "eth0", "--vip", vip4+"/24")
	p := h.Start("agent", args...)
	waitOutput(t, p, "--fence=false", 20*time.Second)
	waitExit(t, p, 10*time.Second, "without its fence")
	t.Log(p.Lines()[len(p.Lines())-1])
}

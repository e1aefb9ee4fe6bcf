package netns

import (
	"strings"
	"testing"
	"time"
)

// handoverRuns is how many hand-overs of each kind the tests make.
const handoverRuns = 10

// handover makes one deliberate hand-over with how (a transfer, a graceful
// stop) while the client requests the service on vip every 10 ms, each
// request on a new connection with a 50 ms timeout. It returns the node
// that handed over, the one that took over and how many requests failed,
// and fails the test if the old node answered again after the new one had.
func (c *cluster) handover(vip string, how func(active int)) (old, next, failed int) {
	t := c.t
	t.Helper()
	url := "http://" + vip + ":" + servicePort + "/"
	old = c.answering(url)
	probe := c.client.Start("probe", binary, "debug", "probe", "--url", url, "--data-dir", c.dirs[0], "--interval", "10ms", "--duration", "30s")
	waitLines(t, probe, 20, 5*time.Second)
	start := time.Now().UnixNano()
	how(old)
	// Until another node has answered 50 times in a row.
	next = -1
	waitFor(t, 20*time.Second, "another node answers on the VIP", func() bool {
		run := 0
		for _, r := range parse[ProbeLine](t, probe.Lines()) {
			if r.T < start {
				continue
			}
			if r.Status == 200 && r.Node != c.nodes[old].Name {
				run++
			} else {
				run = 0
			}
			if run == 50 {
				for i, h := range c.nodes {
					if h.Name == r.Node {
						next = i
					}
				}
				return true
			}
		}
		return false
	})
	probe.Kill()
	seenNew := false
	for _, r := range parse[ProbeLine](t, probe.Lines()) {
		if r.Status != 200 {
			failed++
			t.Logf("failed request at %s: %s", time.Unix(0, r.T).Format("15:04:05.000"), r.Err)
			continue
		}
		switch r.Node {
		case c.nodes[next].Name:
			seenNew = true
		case c.nodes[old].Name:
			if seenNew {
				t.Fatalf("%s answered on the VIP at %s after %s had", r.Node, time.Unix(0, r.T).Format("15:04:05.000"), c.nodes[next].Name)
			}
		default:
			t.Fatalf("%s answered on the VIP during a hand-over from %s to %s", r.Node, c.nodes[old].Name, c.nodes[next].Name)
		}
	}
	return old, next, failed
}

// answering waits for a node to answer url on the VIP and returns it.
func (c *cluster) answering(url string) int {
	c.t.Helper()
	i := -1
	waitFor(c.t, 20*time.Second, "a node answers on the VIP", func() bool {
		name := c.viaVIP(url)
		for j, h := range c.nodes {
			if h.Name == name {
				i = j
			}
		}
		return i >= 0
	})
	return i
}

// transferVia hands leadership over with 'raftvip ha transfer' on the
// active node's own API.
func (c *cluster) transferVia(active int) {
	h := c.nodes[active]
	if out, err := h.Run(binary, "ha", "transfer", "-E", "https://"+h.Addr4+":8092", "--data-dir", c.dirs[active]); err != nil {
		c.t.Fatalf("ha transfer on %s: %v: %s", h.Name, err, out)
	}
}

// stopGracefully sends SIGTERM to the active agent and starts it again
// once it has stopped (restart, with the agent's own flags).
func stopGracefully(restart func(i int)) func(c *cluster, active int) {
	return func(c *cluster, active int) {
		if !c.agents[active].Term(20 * time.Second) {
			c.t.Fatalf("%s did not stop on SIGTERM", c.nodes[active].Name)
		}
		restart(active)
	}
}

// runHandovers makes handoverRuns hand-overs of each kind on c and fails
// the test if any request failed.
func runHandovers(t *testing.T, c *cluster, vip string, restart func(i int)) {
	kinds := []struct {
		name string
		how  func(c *cluster, active int)
	}{
		{"ha transfer", (*cluster).transferVia},
		{"graceful stop", stopGracefully(restart)},
	}
	for _, k := range kinds {
		total := 0
		for i := 0; i < handoverRuns; i++ {
			old, next, failed := c.handover(vip, func(a int) { k.how(c, a) })
			t.Logf("%s %d: %s -> %s, %d failed requests", k.name, i+1, c.nodes[old].Name, c.nodes[next].Name, failed)
			total += failed
			// The next run starts from three healthy members.
			for j := range c.nodes {
				c.waitAPI(j, 30*time.Second)
			}
		}
		t.Logf("%s: %d failed requests in %d hand-overs", k.name, total, handoverRuns)
		if total > 0 {
			t.Errorf("%s lost %d requests in %d hand-overs, want 0", k.name, total, handoverRuns)
		}
	}
}

// keptConnection checks, with one transfer, that a client connection the
// old node accepted before the hand-over goes on being answered by it after
// new connections reach the new node: the new node passes the segments of
// connections it does not know on to the old node, which accepts them
// while it drains (without that, the new node's kernel resets them). It
// returns how long after the first answer from the new node the kept
// connection was last answered by the old one.
func (c *cluster) keptConnection(vip string) time.Duration {
	t := c.t
	t.Helper()
	url := "http://" + vip + ":" + servicePort + "/"
	old := c.answering(url)
	kept := c.client.Start("kept", binary, "debug", "probe", "--url", url, "--data-dir", c.dirs[0], "--interval", "10ms", "--duration", "30s", "--keep-alive")
	fresh := c.client.Start("fresh", binary, "debug", "probe", "--url", url, "--data-dir", c.dirs[0], "--interval", "10ms", "--duration", "30s")
	waitLines(t, kept, 20, 5*time.Second)
	waitLines(t, fresh, 20, 5*time.Second)
	start := time.Now().UnixNano()
	c.transferVia(old)
	var firstNew int64
	waitFor(t, 20*time.Second, "new connections reach another node", func() bool {
		for _, r := range parse[ProbeLine](t, fresh.Lines()) {
			if r.T > start && r.Status == 200 && r.Node != c.nodes[old].Name {
				firstNew = r.T
				return true
			}
		}
		return false
	})
	// Past the old node's drain.
	waitLines(t, kept, len(kept.Lines())+50, 10*time.Second)
	kept.Kill()
	fresh.Kill()
	var lastOld int64
	for _, r := range parse[ProbeLine](t, kept.Lines()) {
		if r.Status == 200 && r.Node == c.nodes[old].Name {
			lastOld = r.T
		}
	}
	after := time.Duration(lastOld - firstNew)
	if after < 20*time.Millisecond {
		t.Fatalf("the connection %s accepted before the hand-over was last answered %v after new connections reached the new node: it was not passed on to %s",
			c.nodes[old].Name, after.Round(time.Millisecond), c.nodes[old].Name)
	}
	return after
}

// TestHandoverARP: 'ha transfer' and a graceful stop of the active node in
// ARP mode lose no request of a client probing every 10 ms (make-before-
// break: the old node accepts what still reaches it until the new node's
// gratuitous ARP has moved the client).
func TestHandoverARP(t *testing.T) {
	c := newCluster(t, "default")
	c.startServices()
	for i := 0; i < 3; i++ {
		t.Logf("a kept connection was answered by the old node %v after new ones reached the new node", c.keptConnection(vip4).Round(time.Millisecond))
	}
	runHandovers(t, c, vip4, func(i int) { c.start(i) })
}

// TestHandoverBGP: the same behind BIRD: the old node's path stays until
// the new node's, in a newer term, has replaced it at the router.
func TestHandoverBGP(t *testing.T) {
	c := newBGPCluster(t)
	c.startServices()
	waitFor(t, 30*time.Second, "BIRD routes the VIP", func() bool { return c.nodeByAddr(c.birdNextHop(bgpVIP4)) >= 0 })
	// Steady first: every node's sessions with BIRD are up (a node without
	// them is not ready and hands the active role on).
	waitFor(t, 30*time.Second, "BIRD's six sessions are established", func() bool {
		out, _ := c.bird.Run("birdc", "-s", c.birdSock, "show", "protocols")
		return strings.Count(out, "Established") == 6
	})
	t.Logf("a kept connection was answered by the old node %v after new ones reached the new node", c.keptConnection(bgpVIP4).Round(time.Millisecond))
	runHandovers(t, c.cluster, bgpVIP4, func(i int) { c.startBGP(i) })
}

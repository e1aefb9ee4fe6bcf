package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

// The routed test network: the nodes (AS 65001) and two routers (AS 65000)
// on the bridge; BIRD (198.18.0.20) and gobgpd (198.18.0.21) each peer with
// all three nodes over IPv4 and IPv6; a client sits behind BIRD on
// 198.19.0.0/24, 2001:db8:1::/64, and reaches the VIP through it.
const (
	bgpVIP4 = "198.18.1.100"
	bgpVIP6 = "2001:db8:2::100"
)

type bgpCluster struct {
	*cluster
	bird, gobgp *Host
	birdSock    string
	client2     *Host
}

func requireTool(t *testing.T, name, pkg string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: apt-get install -y %s (make test does)", name, pkg)
	}
	return p
}

func newBGPCluster(t *testing.T, extra ...string) *bgpCluster {
	t.Helper()
	birdBin := requireTool(t, "bird", "bird2")
	gobgpdBin := requireTool(t, "gobgpd", "gobgpd")
	net := New(t)
	c := &bgpCluster{cluster: &cluster{t: t, net: net, timing: "default"}}
	for i := 1; i <= 3; i++ {
		c.nodes = append(c.nodes, net.AddHost(fmt.Sprintf("n%d", i), i))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.bird = net.AddHost("bird", 20)
	c.gobgp = net.AddHost("gobgp", 21)
	c.client2 = net.AddBareHost("client")
	c.client = c.client2
	net.Link(c.bird, c.client2, "eth1", []string{"198.19.0.1/24", "2001:db8:1::1/64"}, []string{"198.19.0.2/24", "2001:db8:1::2/64"})
	c.client2.MustRun("ip", "route", "add", "default", "via", "198.19.0.1")
	c.client2.MustRun("ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
	c.bird.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	for _, h := range c.nodes {
		h.MustRun("ip", "route", "add", "198.19.0.0/24", "via", "198.18.0.20")
		h.MustRun("ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8::14")
	}
	// BIRD 2: every node a neighbour over IPv4 and IPv6, best routes into
	// the kernel so that the client's traffic follows them.
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("router id 198.18.0.20;\nprotocol device {}\n")
	b.WriteString("protocol kernel { ipv4 { export all; }; }\nprotocol kernel { ipv6 { export all; }; }\n")
	for _, h := range c.nodes {
		fmt.Fprintf(&b, "protocol bgp %s4 { local 198.18.0.20 as 65000; neighbor %s as 65001; hold time 90; ipv4 { import all; export none; }; }\n", h.Name, h.Addr4)
		fmt.Fprintf(&b, "protocol bgp %s6 { local 2001:db8::14 as 65000; neighbor %s as 65001; hold time 90; ipv6 { import all; export none; }; }\n", h.Name, h.Addr6)
	}
	birdCfg := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(birdCfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.birdSock = filepath.Join(dir, "bird.ctl")
	c.bird.Start("bird", birdBin, "-f", "-c", birdCfg, "-s", c.birdSock)
	// gobgpd.
	b.Reset()
	b.WriteString("[global.config]\n  as = 65000\n  router-id = \"198.18.0.21\"\n  port = 179\n")
	for _, h := range c.nodes {
		for _, a := range []string{h.Addr4, h.Addr6} {
			fam := "ipv4-unicast"
			if strings.Contains(a, ":") {
				fam = "ipv6-unicast"
			}
			fmt.Fprintf(&b, "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-as = 65001\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", a, fam)
		}
	}
	gobgpCfg := filepath.Join(dir, "gobgpd.toml")
	if err := os.WriteFile(gobgpCfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.gobgp.Start("gobgpd", gobgpdBin, "-f", gobgpCfg, "--api-hosts", "127.0.0.1:50051")
	c.agents = make([]*Proc, 3)
	c.extra = []string{"--vip-mode", "bgp", "--vip", bgpVIP4, "--vip", bgpVIP6, "--bgp-asn", "65001",
		"--bgp-peer", "198.18.0.20,asn=65000", "--bgp-peer", "2001:db8::14,asn=65000",
		"--bgp-peer", "198.18.0.21,asn=65000", "--bgp-peer", "2001:db8::15,asn=65000", "--bgp-listen-port", "-1"}
	c.extra = append(c.extra, extra...)
	for i := range c.nodes {
		var extra []string
		if i == 0 {
			extra = []string{"--bootstrap"}
		}
		c.startBGP(i, extra...)
	}
	waitFor(t, 20*time.Second, "n1 has a valid ha-state.json", func() bool {
		st, err := consensus.ReadHAState(c.dirs[0])
		return err == nil && st.Valid
	})
	for i := 1; i < 3; i++ {
		c.waitAPI(i, 10*time.Second)
		if out, err := c.nodes[0].Run(binary, "ha", "enroll", "-E", "https://198.18.0.1:8092", "--data-dir", c.dirs[0], "--secret-file", filepath.Join(c.dirs[i], consensus.BootstrapSecretFile), fmt.Sprintf("https://198.18.0.%d:8092", i+1)); err != nil {
			t.Fatalf("enroll n%d: %v: %s", i+1, err, out)
		}
	}
	return c
}

func (c *bgpCluster) startBGP(i int, extra ...string) {
	h := c.nodes[i]
	args := append([]string{binary, "agent", "--data-dir", c.dirs[i], "--node-id", h.Name,
		"--consensus-addr", h.Addr4 + ":8093", "--api-addr", "0.0.0.0:8092", "--api-url", "https://" + h.Addr4 + ":8092",
		"--timing", c.timing}, c.extra...)
	c.agents[i] = h.Start("agent", append(args, extra...)...)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// birdNextHop is the next hop of BIRD's route for vip in the kernel (BIRD
// exports its best route there): the node the router sends the VIP's
// traffic to.
func (c *bgpCluster) birdNextHop(vip string) string {
	args := []string{"ip", "route", "get", vip}
	if strings.Contains(vip, ":") {
		args = []string{"ip", "-6", "route", "get", vip}
	}
	out, err := c.bird.Run(args...)
	if err != nil {
		return ""
	}
	f := strings.Fields(out)
	for i, w := range f {
		if w == "via" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// gobgpBest is gobgpd's best next hop for vip.
func (c *bgpCluster) gobgpBest(vip string) string {
	best, _ := c.gobgpPaths(vip)
	return best
}

// gobgpPaths returns gobgpd's best next hop for vip and the next hops of
// every path it holds for it.
func (c *bgpCluster) gobgpPaths(vip string) (string, []string) {
	fam, pfx := "ipv4", vip+"/32"
	if strings.Contains(vip, ":") {
		fam, pfx = "ipv6", vip+"/128"
	}
	out, err := c.gobgp.Run("gobgp", "-u", "127.0.0.1", "-p", "50051", "global", "rib", "-a", fam, pfx, "-j")
	if err != nil {
		return "", nil
	}
	var rib map[string][]struct {
		Best  bool `json:"best"`
		Attrs []struct {
			Nexthop  string   `json:"nexthop"`
			Nexthops []string `json:"nexthops"`
		} `json:"attrs"`
	}
	if json.Unmarshal([]byte(out), &rib) != nil {
		return "", nil
	}
	best, all := "", []string{}
	for _, paths := range rib {
		for _, p := range paths {
			nh := ""
			for _, a := range p.Attrs {
				if a.Nexthop != "" {
					nh = a.Nexthop
				} else if len(a.Nexthops) > 0 {
					nh = a.Nexthops[0]
				}
			}
			all = append(all, nh)
			if p.Best {
				best = nh
			}
		}
	}
	return best, all
}

func (c *bgpCluster) nodeByAddr(addr string) int {
	for i, h := range c.nodes {
		if h.Addr4 == addr || h.Addr6 == addr {
			return i
		}
	}
	return -1
}

// routedFailover breaks the active node with fail and returns how long
// until both routers' best paths for the VIP point at another node, and
// checks that the client behind BIRD reaches the VIP through it.
//
// With staleStays, the failed node's own path must still be installed on
// gobgpd when the best path has moved: the new path won on its term, not
// because the old session ended.
func (c *bgpCluster) routedFailover(v6 bool, staleStays bool, fail func(int), after func(int)) time.Duration {
	t := c.t
	t.Helper()
	vip, url := bgpVIP4, "https://"+bgpVIP4+":8092"+route.HANode
	if v6 {
		vip, url = bgpVIP6, "https://["+bgpVIP6+"]:8092"+route.HANode
	}
	var active int
	waitFor(t, 30*time.Second, "both routers route the VIP to one node", func() bool {
		b, g := c.birdNextHop(vip), c.gobgpBest(vip)
		active = c.nodeByAddr(b)
		return active >= 0 && c.nodeByAddr(g) == active
	})
	// Steady first: the client reaches that node (right after start-up the
	// active role may just have moved to a node whose sessions came up first).
	waitFor(t, 10*time.Second, "the client reaches "+c.nodes[active].Name+" through the router", func() bool {
		return c.viaVIP(url) == c.nodes[active].Name
	})
	failed := time.Now()
	fail(active)
	var moved time.Duration
	var next int
	waitFor(t, 30*time.Second, "the routers move the VIP to another node", func() bool {
		b, g := c.nodeByAddr(c.birdNextHop(vip)), c.nodeByAddr(c.gobgpBest(vip))
		if b >= 0 && b != active && b == g {
			next, moved = b, time.Since(failed)
			return true
		}
		return false
	})
	if staleStays {
		old := c.nodes[active].Addr4
		if v6 {
			old = c.nodes[active].Addr6
		}
		if _, all := c.gobgpPaths(vip); !slices.Contains(all, old) {
			t.Fatalf("the failed node's path (%s) is gone already (paths %v): its session did not stay up, so term fencing was not tested", old, all)
		}
	}
	waitFor(t, 10*time.Second, "the client reaches the new node through the router", func() bool {
		return c.viaVIP(url) == c.nodes[next].Name
	})
	// Only the announcing node holds the VIP; the third node does not.
	for i, h := range c.nodes {
		if i == active || i == next {
			continue
		}
		if out := h.MustRun("ip", "addr", "show", "dev", "lo"); strings.Contains(out, bgpVIP4) || strings.Contains(out, bgpVIP6) {
			t.Fatalf("passive %s holds the VIP on lo: %s", h.Name, out)
		}
	}
	elected := c.becameActive(next, failed)
	sinceElection := failed.Add(moved).Sub(elected)
	if sinceElection > time.Second {
		t.Fatalf("the routers' best path moved %v after %s became active; want within 1s", sinceElection, c.nodes[next].Name)
	}
	if after != nil {
		after(active)
	}
	t.Logf("%s: routers moved %s from %s to %s %v after the failure, %v after the new node became active (hold timer 90 s)",
		vip, vip, c.nodes[active].Name, c.nodes[next].Name, moved.Round(time.Millisecond), sinceElection.Round(time.Millisecond))
	return moved
}

// becameActive returns when node i logged that it became active, after since.
func (c *bgpCluster) becameActive(i int, since time.Time) time.Time {
	c.t.Helper()
	for _, l := range c.agents[i].Lines() {
		if !strings.Contains(l, `msg="active state changed"`) || !strings.Contains(l, "active=true") {
			continue
		}
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err == nil && at.After(since) {
			return at
		}
	}
	c.t.Fatalf("%s did not log becoming active", c.nodes[i].Name)
	return time.Time{}
}

// dieHard cuts the node's link and then kills it: like a machine that dies,
// it never closes its BGP sessions, which the routers keep until their hold
// timer (90 s) ends.
func (c *bgpCluster) dieHard(a int) {
	c.nodes[a].LinkDown()
	c.agents[a].Kill()
}

func TestBGPKill9(t *testing.T) {
	c := newBGPCluster(t)
	c.routedFailover(false, true, c.dieHard, nil)
}

func TestBGPKill9IPv6(t *testing.T) {
	c := newBGPCluster(t)
	c.routedFailover(true, true, c.dieHard, nil)
}

func TestBGPSIGSTOP(t *testing.T) {
	c := newBGPCluster(t)
	c.routedFailover(false, true, func(a int) { c.agents[a].Stop() }, func(a int) { c.agents[a].Cont() })
}

func TestBGPPartition(t *testing.T) {
	c := newBGPCluster(t)
	c.routedFailover(false, false,
		func(a int) { Partition([]*Host{c.nodes[a]}, c.others(a)) },
		func(a int) { Heal([]*Host{c.nodes[a]}, c.others(a)) })
}

// TestBGPBadConfig: bad BGP settings stop a node at start-up with a clear
// message: a malformed ASN, a VIP that is not a host address, a peer that
// is the node itself, and a router ID another member already uses.
func TestBGPBadConfig(t *testing.T) {
	c := newBGPCluster(t)
	waitFor(t, 30*time.Second, "the routers learn the VIP", func() bool { return c.nodeByAddr(c.birdNextHop(bgpVIP4)) >= 0 })
	// n2 joined; restart it with each bad setting in turn.
	c.agents[1].Kill()
	base := c.extra
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--bgp-asn", "65x01"}, "--bgp-asn"},
		{[]string{"--vip", "198.18.1.0/24"}, "network address"},
		{[]string{"--bgp-peer", "198.18.0.2,asn=65000"}, "this node itself"},
		{[]string{"--bgp-router-id", "198.18.0.1"}, "already used by member n1"},
	} {
		c.extra = append(append([]string{}, base...), tc.flags...)
		c.startBGP(1)
		p := c.agents[1]
		waitFor(t, 15*time.Second, "the agent exits on "+strings.Join(tc.flags, " "), func() bool { return !p.Running() })
		if out := strings.Join(p.Lines(), "\n"); !strings.Contains(out, tc.want) {
			t.Errorf("%v: the agent's message does not say %q:\n%s", tc.flags, tc.want, out)
		}
	}
}

// TestBGPGracefulStop: SIGTERM of the active node withdraws its path and
// closes its sessions at once; the routers move to the new active node
// without waiting for any timer, and ha status shows the sessions.
func TestBGPGracefulStop(t *testing.T) {
	c := newBGPCluster(t)
	var a int
	waitFor(t, 30*time.Second, "the routers learn the VIP", func() bool {
		a = c.nodeByAddr(c.gobgpBest(bgpVIP4))
		return a >= 0
	})
	// The routers can learn the VIP through one session before n1's
	// session with the other is up: wait for that one too.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out := c.nodes[0].MustRun(binary, "ha", "status", "-E", "https://198.18.0.1:8092", "--data-dir", c.dirs[0])
		if strings.Contains(out, "BGP (AS 65001") && strings.Contains(out, "198.18.0.20 established") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ha status does not show the BGP sessions within 30 s:\n%s", out)
		}
	}
	stopped := time.Now()
	if !c.agents[a].Term(15 * time.Second) {
		t.Fatal("the active node did not stop on SIGTERM")
	}
	old := c.nodes[a].Addr4
	waitFor(t, 10*time.Second, "gobgpd drops the stopped node's path", func() bool {
		best, all := c.gobgpPaths(bgpVIP4)
		for _, nh := range all {
			if nh == old {
				return false
			}
		}
		return best != ""
	})
	t.Logf("the stopped node's path was gone %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	// The session was closed as an administrative shutdown (Cease subcode
	// 2, with the shutdown communication), not as a de-configured peer.
	name := c.nodes[a].Name + "4"
	waitFor(t, 10*time.Second, "BIRD reports an administrative shutdown of "+name, func() bool {
		out, _ := c.bird.Run("birdc", "-s", c.birdSock, "show", "protocols", "all", name)
		return strings.Contains(out, "Administrative shutdown")
	})
	out, _ := c.bird.Run("birdc", "-s", c.birdSock, "show", "protocols", "all", name)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Last error") || strings.Contains(l, "shutdown") {
			t.Logf("BIRD: %s", strings.TrimSpace(l))
		}
	}
}

// TestBGPStandby: in standby mode the passive nodes announce the VIP too,
// less preferred; the router's best path is the active node's, and moves
// on a kill.
func TestBGPStandby(t *testing.T) {
	c := newBGPCluster(t, "--bgp-mode", "standby")
	waitFor(t, 30*time.Second, "gobgpd holds three paths, the best from the active node", func() bool {
		best, all := c.gobgpPaths(bgpVIP4)
		i := c.nodeByAddr(best)
		return len(all) == 3 && i >= 0 && c.viaVIP("https://"+bgpVIP4+":8092"+route.HANode) == c.nodes[i].Name
	})
	c.routedFailover(false, true, c.dieHard, nil)
}

// TestBGPBench kills the active node hard (-rounds times) and reports the
// time from the kill to both routers' best path changing, and from the new
// node's election to it.
func TestBGPBench(t *testing.T) {
	if *rounds <= 0 {
		t.Fatalf("-rounds %d must be positive", *rounds)
	}
	c := newBGPCluster(t)
	var moved []time.Duration
	for r := 0; r < *rounds; r++ {
		var failedNode int
		moved = append(moved, c.routedFailover(false, true, func(a int) { failedNode = a; c.dieHard(a) }, nil))
		if r == *rounds-1 {
			break
		}
		c.nodes[failedNode].LinkUp()
		c.startBGP(failedNode)
		c.waitHealthyVia(30 * time.Second)
		// The routers still hold the dead node's old sessions (its link was
		// cut, so nothing closed them); they drop them at their next
		// keepalive, and only then can the restarted node's sessions come up.
		c.waitSessions(failedNode, 120*time.Second)
	}
	t.Logf("BGP benchmark: kill -9 (link cut, session left to the 90 s hold timer) to the best path moving on BIRD and gobgpd: %s over %d kills", stats(moved), len(moved))
}

// waitSessions waits until node i's four BGP sessions are established.
func (c *bgpCluster) waitSessions(i int, within time.Duration) {
	c.t.Helper()
	waitFor(c.t, within, c.nodes[i].Name+"'s BGP sessions are established", func() bool {
		out, err := c.client.Run(binary, "ha", "status", "-E", "https://"+c.nodes[i].Addr4+":8092", "--data-dir", c.dirs[0], "--timeout", "2s")
		if err != nil {
			return false
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, c.nodes[i].Name+" BGP") {
				return strings.Count(l, "established") == 4
			}
		}
		return false
	})
}

// waitHealthyVia waits until the cluster, asked through n1's address, has
// every member reachable.
func (c *bgpCluster) waitHealthyVia(within time.Duration) {
	c.t.Helper()
	waitFor(c.t, within, "the cluster is whole again", func() bool {
		for i := range c.nodes {
			out, err := c.client.Run(binary, "ha", "status", "-E", "https://"+c.nodes[i].Addr4+":8092", "--data-dir", c.dirs[0], "--timeout", "2s")
			if err == nil && strings.Contains(out, "no warnings") {
				return true
			}
		}
		return false
	})
}

// TestBGPMD5: a session with a TCP MD5 password (RFC 2385) comes up when
// both sides agree and stays down when they do not; the VIP is held on lo
// while it is announced; a session the router keeps resetting is retried
// with a growing backoff.
func TestBGPMD5(t *testing.T) {
	birdBin := requireTool(t, "bird", "bird2")
	net := New(t)
	n1 := net.AddHost("n1", 1)
	r := net.AddHost("bird", 20)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bird.conf")
	conf := "router id 198.18.0.20;\nprotocol device {}\n" +
		"protocol bgp good { local 198.18.0.20 as 65000; neighbor 198.18.0.1 as 65001; password \"s3cret\"; ipv4 { import all; export none; }; }\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bird.ctl")
	r.Start("bird", birdBin, "-f", "-c", cfg, "-s", sock)
	start := func(password string) *Proc {
		return n1.Start("agent", binary, "agent", "--data-dir", t.TempDir(), "--node-id", "n1", "--bootstrap",
			"--consensus-addr", "198.18.0.1:8093", "--api-addr", "198.18.0.1:8092", "--timing", "default",
			"--vip-mode", "bgp", "--vip", bgpVIP4, "--bgp-asn", "65001", "--bgp-listen-port", "-1",
			"--bgp-peer", "198.18.0.20,asn=65000,password="+password)
	}
	established := func() bool {
		out, _ := r.Run("birdc", "-s", sock, "show", "protocols", "good")
		return strings.Contains(out, "Established")
	}
	learned := func() bool {
		out, _ := r.Run("birdc", "-s", sock, "show", "route", "for", bgpVIP4+"/32")
		return strings.Contains(out, "198.18.0.1")
	}
	bad := start("wrong")
	// With the wrong password no session may come up, for several connect retries.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if established() {
			t.Fatal("a session with the wrong MD5 password came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	bad.Term(10 * time.Second)
	good := start("s3cret")
	waitFor(t, 30*time.Second, "the session with the right password is established and the VIP learned", func() bool { return established() && learned() })
	if out := n1.MustRun("ip", "-4", "addr", "show", "dev", "lo"); !strings.Contains(out, bgpVIP4+"/32") {
		t.Fatalf("the active node does not hold the VIP on lo: %s", out)
	}
	// The router resets the session three times in a row: the node backs
	// off, 2 s then 4 s, before it reconnects.
	for i := 0; i < 3; i++ {
		waitFor(t, 30*time.Second, "the session is established again", established)
		r.MustRun("birdc", "-s", sock, "restart", "good")
		waitFor(t, 10*time.Second, "the session goes down", func() bool { return !established() })
	}
	waitFor(t, 30*time.Second, "the node backed off twice", func() bool {
		out := strings.Join(good.Lines(), "\n")
		return strings.Contains(out, "holding it down") && strings.Contains(out, "for=2s") && strings.Contains(out, "for=4s")
	})
	waitFor(t, 30*time.Second, "the session is established after the backoff", func() bool { return established() && learned() })
}

// TestBGPImportsNothing: routes a router sends stay out of the node's RIB
// (raftvip announces; it does not route), while the node's own VIP paths
// are announced as before.
func TestBGPImportsNothing(t *testing.T) {
	// Listening on port 179 as well: GoBGP's listener must get TTL 255.
	c := newBGPCluster(t, "--bgp-listen-port", "179")
	const routes = 50
	for i := 0; i < routes; i++ {
		c.gobgp.MustRun("gobgp", "-u", "127.0.0.1", "-p", "50051", "global", "rib", "add", "-a", "ipv4", fmt.Sprintf("198.19.%d.0/24", 200+i))
	}
	waitFor(t, 30*time.Second, "the routers learn the VIP", func() bool { return c.nodeByAddr(c.gobgpBest(bgpVIP4)) >= 0 })
	waitFor(t, 30*time.Second, "every node's gobgpd session has sent the routes", func() bool {
		out, err := c.client.Run(binary, "ha", "dump", "-E", "https://198.18.0.1:8092", "--data-dir", c.dirs[0], "--timeout", "2s")
		if err != nil {
			return false
		}
		var d struct {
			Status struct {
				Members []struct {
					ID     string `json:"id"`
					Status *struct {
						Announcer *struct {
							RIBPaths uint64 `json:"rib_paths"`
							Peers    []struct {
								Address  string `json:"address"`
								Received uint64 `json:"received"`
							} `json:"peers"`
						} `json:"announcer"`
					} `json:"status"`
				} `json:"members"`
			} `json:"status"`
		}
		if json.Unmarshal([]byte(out), &d) != nil || len(d.Status.Members) != 3 {
			return false
		}
		for _, m := range d.Status.Members {
			if m.Status == nil || m.Status.Announcer == nil {
				return false
			}
			a := m.Status.Announcer
			// Its own paths only: the VIPs (v4 and v6) at most.
			if a.RIBPaths > 2 {
				t.Fatalf("%s's RIB holds %d paths, with %d routes sent by the router", m.ID, a.RIBPaths, routes)
			}
			got := uint64(0)
			for _, p := range a.Peers {
				if p.Address == "198.18.0.21" {
					got = p.Received
				}
			}
			if got < routes {
				return false
			}
		}
		return true
	})
	t.Logf("every node received the router's %d routes and kept none in its RIB", routes)
	for i, a := range c.agents {
		for _, l := range a.Lines() {
			if strings.Contains(l, "cannot set TTL") {
				t.Fatalf("n%d: %s", i+1, l)
			}
		}
	}
}

// TestBGPNotReadyMoves: both routers shut their sessions with the active
// node down while the others' stay up (its link to the cluster is fine):
// it is not ready, so it hands leadership to a node with sessions, the
// routers' best path follows, and ha status says why.
func TestBGPNotReadyMoves(t *testing.T) {
	c := newBGPCluster(t)
	for i := range c.nodes {
		c.waitSessions(i, 60*time.Second)
	}
	sessions := func(a int, on bool) {
		verb := map[bool]string{true: "enable", false: "disable"}[on]
		h := c.nodes[a]
		for _, p := range []string{h.Name + "4", h.Name + "6"} {
			c.bird.MustRun("birdc", "-s", c.birdSock, verb, p)
		}
		for _, addr := range []string{h.Addr4, h.Addr6} {
			c.gobgp.MustRun("gobgp", "-u", "127.0.0.1", "-p", "50051", "neighbor", addr, verb)
		}
	}
	var old int
	c.routedFailover(false, false, func(a int) {
		old = a
		sessions(a, false)
	}, nil)
	var out string
	waitFor(t, 20*time.Second, "ha status says why the active node moved", func() bool {
		var err error
		out, err = c.client.Run(binary, "ha", "status", "-E", "https://198.18.0.1:8092", "--data-dir", c.dirs[0], "--timeout", "2s")
		return err == nil && strings.Contains(out, c.nodes[old].Name+" handed leadership to") && strings.Contains(out, "no BGP session established")
	})
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "WARNING") {
			t.Log(l)
		}
	}
	sessions(old, true)
	c.waitSessions(old, 60*time.Second)
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kib int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kib)
			return kib
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestBGPRouteMemory: a router sends a node 20,000 /32s; the node's RIB
// takes none of them, and the test reports what they cost the node in
// memory (GoBGP's Adj-RIB-In still holds what it received). Run it with
// RAFTVIP_BINARY set to an earlier build to compare.
func TestBGPRouteMemory(t *testing.T) {
	birdBin := requireTool(t, "bird", "bird2")
	net := New(t)
	n1 := net.AddHost("n1", 1)
	r := net.AddHost("bird", 20)
	dir := t.TempDir()
	const routes = 20000
	var b strings.Builder
	b.WriteString("router id 198.18.0.20;\nprotocol device {}\nprotocol static flood { disabled; ipv4;\n")
	for i := 0; i < routes; i++ {
		fmt.Fprintf(&b, "  route 198.19.%d.%d/32 blackhole;\n", 100+i/256, i%256)
	}
	b.WriteString("}\nprotocol bgp n1 { local 198.18.0.20 as 65000; neighbor 198.18.0.1 as 65001; ipv4 { import all; export where proto = \"flood\"; }; }\n")
	cfg := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bird.ctl")
	r.Start("bird", birdBin, "-f", "-c", cfg, "-s", sock)
	data := t.TempDir()
	agent := n1.Start("agent", binary, "agent", "--data-dir", data, "--node-id", "n1", "--bootstrap",
		"--consensus-addr", "198.18.0.1:8093", "--api-addr", "198.18.0.1:8092", "--timing", "default",
		"--vip-mode", "bgp", "--vip", bgpVIP4, "--bgp-asn", "65001", "--bgp-listen-port", "-1",
		"--bgp-peer", "198.18.0.20,asn=65000")
	waitFor(t, 30*time.Second, "the router learns the VIP", func() bool {
		out, _ := r.Run("birdc", "-s", sock, "show", "route", "for", bgpVIP4+"/32")
		return strings.Contains(out, "198.18.0.1")
	})
	type ann struct {
		RIBPaths *uint64 `json:"rib_paths"`
		Peers    []struct {
			Received uint64 `json:"received"`
		} `json:"peers"`
	}
	status := func() (ann, bool) {
		out, err := n1.Run(binary, "ha", "dump", "-E", "https://198.18.0.1:8092", "--data-dir", data, "--timeout", "2s")
		var d struct {
			Status struct {
				Members []struct {
					Status *struct {
						Announcer ann `json:"announcer"`
					} `json:"status"`
				} `json:"members"`
			} `json:"status"`
		}
		if err != nil || json.Unmarshal([]byte(out), &d) != nil || len(d.Status.Members) != 1 || d.Status.Members[0].Status == nil {
			return ann{}, false
		}
		return d.Status.Members[0].Status.Announcer, true
	}
	settle := func() int {
		// The median of five samples a quarter of a second apart.
		var s []int
		for i := 0; i < 5; i++ {
			time.Sleep(250 * time.Millisecond)
			s = append(s, rssKiB(t, agent.Pid()))
		}
		slices.Sort(s)
		return s[2]
	}
	before := settle()
	r.MustRun("birdc", "-s", sock, "enable", "flood")
	waitFor(t, 60*time.Second, "the router has sent its routes", func() bool {
		out, _ := r.Run("birdc", "-s", sock, "show", "protocols", "all", "n1")
		return strings.Contains(out, fmt.Sprintf("%d exported", routes))
	})
	// A build that counts what it received: until it has them all (an
	// earlier build reports no rib_paths, and the settling stands in).
	var a ann
	waitFor(t, 60*time.Second, "the node has received the router's routes", func() bool {
		var ok bool
		a, ok = status()
		return ok && (a.RIBPaths == nil || len(a.Peers) == 1 && a.Peers[0].Received >= routes)
	})
	after := settle()
	rib := "unknown (an earlier build)"
	if a.RIBPaths != nil {
		rib = fmt.Sprint(*a.RIBPaths)
		if *a.RIBPaths > 1 {
			t.Fatalf("the node's RIB holds %d paths after the router sent %d", *a.RIBPaths, routes)
		}
	}
	t.Logf("RSS %d KiB before, %d KiB with %d routes received (+%d KiB); RIB paths: %s", before, after, routes, after-before, rib)
}

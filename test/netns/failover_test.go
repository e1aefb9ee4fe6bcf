package netns

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

// binary is the raftvip binary built for these tests.
var binary string

func TestMain(m *testing.M) {
	if addr := os.Getenv(serveEnv); addr != "" {
		serveService(addr, os.Getenv(serveNameEnv))
		return
	}
	dir, err := os.MkdirTemp("", "raftvip-netns-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftvip")
	if b := os.Getenv("RAFTVIP_BINARY"); b != "" {
		// A prebuilt binary, for comparing builds (an earlier one, say).
		binary = b
	} else if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/raftvip").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building raftvip: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	vip4 = "198.18.0.100"
	vip6 = "2001:db8::100"
)

// cluster is three raftvip nodes and a client on one test network.
type cluster struct {
	t      *testing.T
	net    *Net
	nodes  []*Host
	agents []*Proc
	dirs   []string
	client *Host
	timing string
	extra  []string // flags every agent gets
}

func newCluster(t *testing.T, timing string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, net: New(t), timing: timing, extra: extra}
	for i := 1; i <= 3; i++ {
		c.nodes = append(c.nodes, c.net.AddHost(fmt.Sprintf("n%d", i), i))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.client = c.net.AddHost("client", 10)
	c.agents = make([]*Proc, 3)
	for i := range c.nodes {
		var extra []string
		if i == 0 {
			extra = []string{"--bootstrap"}
		}
		c.start(i, extra...)
	}
	c.waitActive(0, 20*time.Second)
	// The first node is active a moment before its ha-state.json (with the
	// API token the CLI reads) is written.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := consensus.ReadHAState(c.dirs[0]); err == nil && st.Valid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n1 did not write a valid ha-state.json")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 1; i < 3; i++ {
		c.waitAPI(i, 10*time.Second)
		out, err := c.client.Run(binary, "ha", "enroll", "-E", "https://198.18.0.1:8092", "--data-dir", c.dirs[0], "--secret-file", filepath.Join(c.dirs[i], consensus.BootstrapSecretFile), fmt.Sprintf("https://198.18.0.%d:8092", i+1))
		if err != nil {
			t.Fatalf("enroll n%d: %v: %s", i+1, err, out)
		}
	}
	return c
}

func (c *cluster) start(i int, extra ...string) {
	h := c.nodes[i]
	args := append([]string{binary, "agent", "--data-dir", c.dirs[i], "--node-id", h.Name,
		"--consensus-addr", h.Addr4 + ":8093", "--api-addr", "0.0.0.0:8092", "--api-url", "https://" + h.Addr4 + ":8092",
		"--virt-interface", "eth0", "--vip", vip4 + "/24", "--vip", vip6 + "/64", "--timing", c.timing}, c.extra...)
	args = append(args, extra...)
	c.agents[i] = h.Start("agent", args...)
}

// status asks node i for its own status over its node address.
func (c *cluster) status(i int) (map[string]any, error) {
	out, err := c.client.Run(binary, "debug", "probe", "--url", fmt.Sprintf("https://%s:8092%s", c.nodes[i].Addr4, route.HANode), "--data-dir", c.dirs[i], "--duration", "1ms")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var r map[string]any
	return r, json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &r)
}

func (c *cluster) waitAPI(i int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if r, err := c.status(i); err == nil && r["status"] == float64(200) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("n%d's API did not come up within %v", i+1, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// activeVia returns the node that answers on the VIP, probing from the client.
func (c *cluster) viaVIP(url string) string {
	out, err := c.client.Run(binary, "debug", "probe", "--url", url, "--data-dir", c.dirs[0], "--duration", "1ms")
	if err != nil {
		return ""
	}
	var r ProbeLine
	if json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &r) != nil || r.Status != 200 {
		return ""
	}
	return r.Node
}

func (c *cluster) waitActive(i int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if c.viaVIP("https://"+vip4+":8092"+route.HANode) == c.nodes[i].Name {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("n%d did not answer on the VIP within %v", i+1, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ProbeLine is one line of 'raftvip debug probe'.
type ProbeLine struct {
	T      int64  `json:"t"`
	Node   string `json:"node"`
	Via    string `json:"via"`
	Status int    `json:"status"`
	Err    string `json:"err"`
}

// ARPLine is one line of 'raftvip debug arpwatch'.
type ARPLine struct {
	T   int64  `json:"t"`
	Op  string `json:"op"`
	MAC string `json:"mac"`
}

func parse[T any](t *testing.T, lines []string) []T {
	var out []T
	for _, l := range lines {
		var v T
		if err := json.Unmarshal([]byte(l), &v); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// failover runs one failure scenario: probe and ARP observer in the client,
// break the active node with fail, wait for another node to answer on the
// VIP, run after (heal, resume), keep watching, and check that no two nodes
// ever answered in the same interval.
func (c *cluster) failover(v6 bool, fail func(active int), after func(active int)) result {
	t := c.t
	t.Helper()
	vip, url := vip4, "https://"+vip4+":8092"+route.HANode
	if v6 {
		vip, url = vip6, "https://["+vip6+"]:8092"+route.HANode
	}
	var active = -1
	deadline := time.Now().Add(10 * time.Second)
	for active < 0 && time.Now().Before(deadline) {
		name := c.viaVIP(url)
		for i, h := range c.nodes {
			if h.Name == name {
				active = i
			}
		}
	}
	if active < 0 {
		t.Fatal("no node answers on the VIP")
	}
	macs := map[string]string{}
	for _, h := range c.nodes {
		macs[h.MAC()] = h.Name
	}
	probe := c.client.Start("probe", binary, "debug", "probe", "--url", url, "--data-dir", c.dirs[0], "--interval", "10ms", "--duration", "60s")
	watch := c.client.Start("arpwatch", binary, "debug", "arpwatch", "--vip", vip, "--duration", "60s")
	waitLines(t, probe, 20, 5*time.Second)
	failed := time.Now()
	fail(active)
	// Wait until another node answers ten times in a row.
	var took time.Duration
	deadline = time.Now().Add(20 * time.Second)
	for took == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no other node answered on the VIP within 20s of the failure")
		}
		time.Sleep(20 * time.Millisecond)
		res := parse[ProbeLine](t, probe.Lines())
		run := 0
		for _, r := range res {
			if r.T < failed.UnixNano() {
				continue
			}
			if r.Status == 200 && r.Node != c.nodes[active].Name {
				run++
			} else {
				run = 0
			}
			if run == 10 {
				took = time.Duration(r.T - failed.UnixNano())
				break
			}
		}
	}
	var healed int64
	if after != nil {
		healed = time.Now().UnixNano()
		after(active)
	}
	// Keep watching for a while after the heal or resume.
	n := len(probe.Lines())
	waitLines(t, probe, n+150, 10*time.Second)
	probe.Kill()
	watch.Kill()

	res := parse[ProbeLine](t, probe.Lines())
	var lastOld, firstNew int64
	newName := ""
	for _, r := range res {
		if r.Status != 200 {
			continue
		}
		if r.Node == c.nodes[active].Name {
			if newName != "" {
				t.Fatalf("%s answered on the VIP at %s, after %s had taken over at %s",
					r.Node, time.Unix(0, r.T).Format("15:04:05.000"), newName, time.Unix(0, firstNew).Format("15:04:05.000"))
			}
			lastOld = r.T
			continue
		}
		if newName == "" {
			newName, firstNew = r.Node, r.T
		} else if r.Node != newName {
			t.Fatalf("both %s and %s answered on the VIP after the failure", newName, r.Node)
		}
	}
	if newName == "" {
		t.Fatal("the probe saw no new node")
	}
	// ARP: after the new node's first announcement, the old node's MAC
	// never answers for the VIP again.
	seenNew := int64(0)
	for _, a := range parse[ARPLine](t, watch.Lines()) {
		who := macs[a.MAC]
		if who == newName && seenNew == 0 {
			seenNew = a.T
		}
		if who == c.nodes[active].Name && seenNew != 0 {
			t.Fatalf("%s (%s) sent %s for %s at %s after %s had announced it", who, a.MAC, a.Op, vip, time.Unix(0, a.T).Format("15:04:05.000"), newName)
		}
	}
	if seenNew == 0 {
		t.Fatalf("the ARP observer saw no announcement from %s", newName)
	}
	dark := time.Duration(firstNew - lastOld)
	res2 := result{dark: dark, old: active, heal: -1}
	if healed != 0 {
		for _, r := range res {
			if r.T >= healed && r.Status == 200 {
				res2.heal = time.Duration(r.T - healed)
				break
			}
		}
		if res2.heal < 0 {
			t.Fatalf("the client did not reach the VIP after the heal")
		}
	}
	t.Logf("%s took over from %s: VIP dark for %v (from the last answer of the old node to the first of the new); ten answers in a row %v after the failure",
		newName, c.nodes[active].Name, dark.Round(time.Millisecond), took.Round(time.Millisecond))
	return res2
}

// result is what one failover measured.
type result struct {
	dark time.Duration // last answer of the old node to first of the new
	heal time.Duration // heal/resume to the next answer on the VIP; -1 if none
	old  int           // the node that failed
}

func waitLines(t *testing.T, p *Proc, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(p.Lines()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s printed %d lines, want %d within %v", p.Name, len(p.Lines()), n, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailoverKill9(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(false, func(a int) { c.agents[a].Kill() }, nil)
}

func TestFailoverKill9IPv6(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(true, func(a int) { c.agents[a].Kill() }, nil)
}

func TestFailoverSIGSTOP(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(false, func(a int) { c.agents[a].Stop() }, func(a int) { c.agents[a].Cont() })
}

func TestFailoverLinkDown(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(false, func(a int) { c.nodes[a].LinkDown() }, func(a int) { c.nodes[a].LinkUp() })
}

func (c *cluster) others(a int) []*Host {
	var out []*Host
	for i, h := range c.nodes {
		if i != a {
			out = append(out, h)
		}
	}
	return out
}

func TestFailoverPartition(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(false,
		func(a int) { Partition([]*Host{c.nodes[a]}, c.others(a)) },
		func(a int) { Heal([]*Host{c.nodes[a]}, c.others(a)) })
}

func TestFailoverPartitionOneWayOut(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(false,
		func(a int) { c.nodes[a].Block(c.others(a)...) },
		func(a int) { c.nodes[a].Unblock(c.others(a)...) })
}

func TestFailoverPartitionOneWayIn(t *testing.T) {
	c := newCluster(t, "default")
	c.failover(false,
		func(a int) {
			for _, o := range c.others(a) {
				o.Block(c.nodes[a])
			}
		},
		func(a int) {
			for _, o := range c.others(a) {
				o.Unblock(c.nodes[a])
			}
		})
}

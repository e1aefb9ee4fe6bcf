package netns

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

// lbCluster is three nodes behind a real HAProxy in its own namespace, and
// a client that writes through it.
type lbCluster struct {
	*cluster
	lb    *Host
	proxy *Proc
	token string
}

const lbAddr = "198.18.0.20:80"

func requireHAProxy(t *testing.T) string {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed: apt-get install -y haproxy (make test does)")
	}
	return bin
}

func newLBCluster(t *testing.T, timing string) *lbCluster {
	t.Helper()
	bin := requireHAProxy(t)
	c := &lbCluster{cluster: newCluster(t, timing)}
	st, err := consensus.ReadHAState(c.dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	c.token = st.Token
	c.lb = c.net.AddHost("lb", 20)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	c.lb.MustRun(binary, "haproxy", "config", "-E", "https://198.18.0.1:8092", "--data-dir", c.dirs[0], "--bind", lbAddr, "-o", cfg)
	c.lb.MustRun(bin, "-c", "-f", cfg)
	c.proxy = c.lb.Start("haproxy", bin, "-db", "-f", cfg)
	return c
}

// writer writes through HAProxy every 10 ms; each line names the node that
// answered and the one that relayed it, if any.
func (c *lbCluster) writer() *Proc {
	return c.client.Start("writer", binary, "debug", "probe", "--url", "http://"+lbAddr+route.Object("item", "k"),
		"--method", "PUT", "--body", `{"v":1}`, "--header", "Authorization: Bearer "+c.token, "--header", "Content-Type: application/json",
		"--interval", "10ms", "--duration", "60s")
}

// waitServed waits until n writes in a row succeeded through HAProxy after
// since, and returns the time of the first of them and the node.
func waitServed(t *testing.T, p *Proc, since time.Time, n int, within time.Duration) (time.Time, string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		run, first, node := 0, int64(0), ""
		for _, r := range parse[ProbeLine](t, p.Lines()) {
			if r.T < since.UnixNano() {
				continue
			}
			if r.Status == 200 {
				if run == 0 {
					first, node = r.T, r.Node
				}
				run++
				if run == n {
					return time.Unix(0, first), node
				}
			} else {
				run = 0
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d successful writes in a row through HAProxy within %v", n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOnlyActiveAnswered fails if a write was answered (2xx) by a node
// other than the active one, or relayed by a passive node.
func checkOnlyActiveAnswered(t *testing.T, p *Proc, old string, since, failed time.Time) {
	t.Helper()
	newNode := ""
	for _, r := range parse[ProbeLine](t, p.Lines()) {
		if r.Status < 200 || r.Status > 299 || r.T < since.UnixNano() {
			continue
		}
		if r.Via != "" {
			t.Fatalf("a write was relayed by the passive node %s at %s", r.Via, time.Unix(0, r.T).Format("15:04:05.000"))
		}
		if r.T < failed.UnixNano() {
			if r.Node != old {
				t.Fatalf("before the failure, %s answered a write; the active node was %s", r.Node, old)
			}
			continue
		}
		if r.Node == old {
			continue // answered by the old node before it let go
		}
		if newNode == "" {
			newNode = r.Node
		} else if r.Node != newNode {
			t.Fatalf("after the failure both %s and %s answered writes", newNode, r.Node)
		}
	}
}

// steady waits until HAProxy sends every write to the active node alone
// (20 answers in a row from one node, none relayed), and returns that node
// and when this began. Until its first checks have run, HAProxy counts every
// server as up and may send writes to passive nodes, which relay them to the
// active node.
func (c *lbCluster) steady(t *testing.T, p *Proc) (int, time.Time) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		run, first, node := 0, int64(0), ""
		for _, r := range parse[ProbeLine](t, p.Lines()) {
			if r.Status != 200 || r.Via != "" || (run > 0 && r.Node != node) {
				run = 0
			}
			if r.Status == 200 && r.Via == "" {
				if run == 0 {
					first, node = r.T, r.Node
				}
				run++
			}
			if run == 20 {
				for i, h := range c.nodes {
					if h.Name == node {
						return i, time.Unix(0, first)
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("HAProxy did not settle on one active node within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHAProxyKill9(t *testing.T) {
	c := newLBCluster(t, "default")
	w := c.writer()
	a, since := c.steady(t, w)
	killed := time.Now()
	c.agents[a].Kill()
	at, node := waitServed(t, w, killed, 10, 20*time.Second)
	if node == c.nodes[a].Name {
		t.Fatalf("the killed node %s still answers", node)
	}
	w.Kill()
	checkOnlyActiveAnswered(t, w, c.nodes[a].Name, since, killed)
	t.Logf("HAProxy served writes from %s %v after kill -9 of %s", node, at.Sub(killed).Round(time.Millisecond), c.nodes[a].Name)
}

// TestHAProxyPartition: the active node, cut off from the others, answers
// 503 on /healthz/active no later than its lease expires, and HAProxy moves
// the writes to the new active node.
func TestHAProxyPartition(t *testing.T) {
	c := newLBCluster(t, "default")
	w := c.writer()
	a, since := c.steady(t, w)
	old := c.nodes[a]
	check := c.lb.Start("check", binary, "debug", "probe", "--url", "https://"+old.Addr4+":8092/healthz/active", "--data-dir", c.dirs[0], "--interval", "5ms", "--duration", "60s")
	waitLines(t, check, 20, 5*time.Second)
	cut := time.Now()
	Partition([]*Host{old}, c.others(a))
	at, node := waitServed(t, w, cut, 10, 20*time.Second)
	if node == old.Name {
		t.Fatalf("the partitioned node %s still answers writes", node)
	}
	var first503 time.Duration = -1
	for _, r := range parse[ProbeLine](t, check.Lines()) {
		if r.T >= cut.UnixNano() && r.Status == 503 {
			first503 = time.Duration(r.T - cut.UnixNano())
			break
		}
	}
	lease := consensus.Profiles["default"].ActiveLease
	if first503 < 0 || first503 > lease+50*time.Millisecond {
		t.Fatalf("the partitioned node answered 503 on /healthz/active %v after the cut; its lease is %v", first503, lease)
	}
	Heal([]*Host{old}, c.others(a))
	w.Kill()
	checkOnlyActiveAnswered(t, w, old.Name, since, cut)
	t.Logf("partitioned %s answered 503 %v after the cut (lease %v); HAProxy served writes from %s %v after the cut",
		old.Name, first503.Round(time.Millisecond), lease, node, at.Sub(cut).Round(time.Millisecond))
}

// TestRollingRestart: each node in turn is stopped with SIGTERM and started
// again; a client that retries a failed write once never loses one.
func TestRollingRestart(t *testing.T) {
	c := newLBCluster(t, "default")
	url := "http://" + lbAddr + route.Kind("item") + "/"
	var lost []string
	for round := 0; round < 1; round++ {
		for i := range c.nodes {
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.agents[i].Term(15 * time.Second)
			}()
			// Write while the node stops, each write retried once.
			ws := time.Now()
			for j := 0; j < 20; j++ {
				key := fmt.Sprintf("r%d-n%d-%d", round, i, j)
				ok := false
				for try := 0; try < 2 && !ok; try++ {
					out, _ := c.client.Run(binary, "debug", "probe", "--url", url+key, "--method", "PUT", "--body", `{"v":1}`,
						"--header", "Authorization: Bearer "+c.token, "--header", "Content-Type: application/json", "--duration", "1ms", "--interval", "1s")
					ok = strings.Contains(out, `"status":200`)
					if !ok && try == 0 {
						time.Sleep(time.Second) // the client's one retry, after a second
					}
				}
				if !ok {
					lost = append(lost, key)
				}
			}
			t.Logf("%s: 20 writes took %v", c.nodes[i].Name, time.Since(ws).Round(time.Millisecond))
			t0 := time.Now()
			<-done
			t1 := time.Now()
			c.start(i)
			c.waitHealthy(30 * time.Second)
			t.Logf("%s: writes done, stop took %v more, back and whole in %v", c.nodes[i].Name, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d writes failed twice during the rolling restart: %v", len(lost), lost)
	}
}

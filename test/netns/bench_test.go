package netns

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftvip/raftvip/consensus"
)

var (
	rounds   = flag.Int("rounds", 1, "failures of each kind per timing profile in TestFailoverBench (bench/failover.sh sets 10)")
	profiles = flag.String("profiles", "default,fast", "timing profiles TestFailoverBench measures")
)

// TestFailoverBench repeats kill -9, link down, SIGSTOP and a partition of
// the active node -rounds times for each timing profile, and reports the
// VIP's dark time as the client sees it (min, median, max) and how soon the
// client reached the VIP after a heal or resume. Any instant at which two
// nodes answered fails the run. In a plain test run it does one round of
// each, as a check that the benchmark works.
func TestFailoverBench(t *testing.T) {
	if *rounds <= 0 {
		t.Fatalf("-rounds %d must be positive", *rounds)
	}
	var report []string
	for _, profile := range strings.Split(*profiles, ",") {
		tm, ok := consensus.Profiles[profile]
		if !ok {
			t.Fatalf("-profiles: no timing profile %q", profile)
		}
		report = append(report, fmt.Sprintf("profile %s: heartbeat %v, election %v, leader lease %v, active lease %v",
			profile, tm.Heartbeat, tm.Election, tm.LeaderLease, tm.ActiveLease))
		for _, kind := range []string{"kill9", "linkdown", "sigstop", "partition"} {
			c := newCluster(t, profile)
			var darks, heals []time.Duration
			for r := 0; r < *rounds; r++ {
				var res result
				switch kind {
				case "kill9":
					res = c.failover(false, func(a int) { c.agents[a].Kill() }, nil)
					c.start(res.old)
				case "linkdown":
					res = c.failover(false, func(a int) { c.nodes[a].LinkDown() }, func(a int) { c.nodes[a].LinkUp() })
				case "sigstop":
					res = c.failover(false, func(a int) { c.agents[a].Stop() }, func(a int) { c.agents[a].Cont() })
				case "partition":
					res = c.failover(false,
						func(a int) { Partition([]*Host{c.nodes[a]}, c.others(a)) },
						func(a int) { Heal([]*Host{c.nodes[a]}, c.others(a)) })
				}
				darks = append(darks, res.dark)
				if res.heal >= 0 {
					heals = append(heals, res.heal)
				}
				c.waitHealthy(30 * time.Second)
			}
			line := fmt.Sprintf("  %-9s dark %s over %d runs; two nodes answering: 0 ms", kind, stats(darks), len(darks))
			if len(heals) > 0 {
				line += fmt.Sprintf("; VIP reached after heal/resume %s", stats(heals))
			}
			report = append(report, line)
			t.Log(line)
		}
	}
	t.Logf("failover benchmark:\n%s", strings.Join(report, "\n"))
}

func stats(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v median %v max %v", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

// waitHealthy waits until every node is reachable and the status has no
// warnings, so that the next round starts from a whole cluster.
func (c *cluster) waitHealthy(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := c.client.Run(binary, "ha", "status", "-E", "https://"+vip4+":8092", "--data-dir", c.dirs[0], "--timeout", "2s")
		if err == nil && strings.Contains(out, "no warnings") {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster did not become whole within %v: %v\n%s", within, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHAProxyBench kills the active node -rounds times behind HAProxy and
// reports the time from the kill until HAProxy serves writes from the new
// active node (min, median, max), with the HAProxy timings used.
func TestHAProxyBench(t *testing.T) {
	if *rounds <= 0 {
		t.Fatalf("-rounds %d must be positive", *rounds)
	}
	c := newLBCluster(t, "default")
	w := c.writer()
	a, since := c.steady(t, w)
	var took []time.Duration
	for r := 0; r < *rounds; r++ {
		killed := time.Now()
		c.agents[a].Kill()
		at, node := waitServed(t, w, killed, 10, 20*time.Second)
		checkOnlyActiveAnswered(t, w, c.nodes[a].Name, since, killed)
		took = append(took, at.Sub(killed))
		c.start(a)
		c.waitHealthy(30 * time.Second)
		for i, h := range c.nodes {
			if h.Name == node {
				a = i
			}
		}
		since = time.Now()
	}
	w.Kill()
	tm := consensus.Profiles["default"]
	t.Logf("HAProxy benchmark: kill -9 of the active node to writes served by the new one: %s over %d kills\n"+
		"  HAProxy: inter 100ms, fall 2, rise 1, on-marked-down shutdown-sessions, retries 3, redispatch; raftvip timing default (heartbeat %v, active lease %v)",
		stats(took), len(took), tm.Heartbeat, tm.ActiveLease)
}

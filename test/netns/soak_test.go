package netns

import (
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

var soak = flag.Duration("soak", 20*time.Second, "how long TestSoak keeps each timing profile's cluster under write load (bench/soak.sh sets 30m)")

// TestSoak runs a three-node cluster of each timing profile (-profiles)
// under write load for -soak with no fault, and reports the elections (Raft
// term changes), the times the active node let go of its lease without an
// election, each a dark VIP), and the failed writes. The goal is zero of
// each; the figures are reported rather than asserted, since they depend on
// how busy the machine is, except that writes must get through.
func TestSoak(t *testing.T) {
	if *soak <= 0 || *soak > 2*time.Hour {
		t.Fatalf("-soak %v must be between 0 and 2h", *soak)
	}
	var report []string
	for _, profile := range strings.Split(*profiles, ",") {
		if _, ok := consensus.Profiles[profile]; !ok {
			t.Fatalf("-profiles: no timing profile %q", profile)
		}
		t.Run(profile, func(t *testing.T) {
			line := soakProfile(t, profile)
			t.Log(line)
			report = append(report, line)
		})
	}
	t.Logf("soak under write load, %v per profile:\n%s", *soak, strings.Join(report, "\n"))
}

var termRE = regexp.MustCompile(`, term (\d+),`)

// term is the cluster's Raft term as the active node's 'ha status' reports it.
func (c *cluster) term() uint64 {
	c.t.Helper()
	var term uint64
	waitFor(c.t, 20*time.Second, "ha status reports the term", func() bool {
		out, err := c.client.Run(binary, "ha", "status", "-E", "https://"+vip4+":8092", "--data-dir", c.dirs[0], "--timeout", "2s")
		m := termRE.FindStringSubmatch(out)
		if err != nil || m == nil {
			return false
		}
		term, _ = strconv.ParseUint(m[1], 10, 64)
		return true
	})
	return term
}

func soakProfile(t *testing.T, profile string) string {
	c := newCluster(t, profile)
	c.waitHealthy(30 * time.Second)
	st, err := consensus.ReadHAState(c.dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	term0 := c.term()
	flaps0 := c.letGo()
	dur := fmt.Sprint(*soak)
	writer := c.client.Start("writer", binary, "debug", "probe", "--url", "https://"+vip4+":8092"+route.Object("soak", "k"), "--data-dir", c.dirs[0],
		"--method", "PUT", "--body", `{"v":1}`, "--header", "Authorization: Bearer "+st.Token, "--header", "Content-Type: application/json",
		"--interval", "10ms", "--duration", dur)
	started := time.Now()
	for deadline := started.Add(*soak + time.Minute); writer.Running(); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not end")
		}
	}
	term1 := c.term()
	flaps := c.letGo() - flaps0
	ok, failed := 0, 0
	for _, r := range parse[ProbeLine](t, writer.Lines()) {
		if r.Status == 200 {
			ok++
		} else {
			failed++
		}
	}
	if ok == 0 {
		t.Fatalf("no write succeeded in %v", *soak)
	}
	return fmt.Sprintf("  %-8s %v: %d elections (term %d -> %d), %d times an active node let go of the VIP, %d writes, %d failed",
		profile, time.Since(started).Round(time.Second), term1-term0, term0, term1, flaps, ok+failed, failed)
}

// letGo counts, over every agent's log, the times a node stopped being
// active.
func (c *cluster) letGo() int {
	n := 0
	for _, a := range c.agents {
		for _, l := range a.Lines() {
			if strings.Contains(l, `msg="active state changed"`) && strings.Contains(l, "active=false") {
				n++
			}
		}
	}
	return n
}

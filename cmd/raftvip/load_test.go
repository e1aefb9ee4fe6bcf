package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

var (
	loadDuration = flag.Duration("load-duration", time.Second, "how long each load phase of TestHealthLoad runs (bench/healthz.sh sets more)")
	loadPhases   = flag.Int("load-phases", 1, "how many write phases with and without health checks TestHealthLoad alternates")
)

func round(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}

// hammer sends requests from workers goroutines for d and returns how many
// succeeded with the wanted status and how many did not.
func hammer(ctx context.Context, c *http.Client, d time.Duration, workers int, do func(c *http.Client) (bool, error)) (ok, bad int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var okN, badN atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if good, err := do(c); good && err == nil {
					okN.Add(1)
				} else if ctx.Err() == nil {
					badN.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return okN.Load(), badN.Load()
}

func get(c *http.Client, url string, want int) (bool, error) {
	resp, err := c.Get(url)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == want, nil
}

// TestHealthLoad measures /healthz/active on an active node (requests/s
// from 32 keep-alive clients) and the write rate of a three-node cluster
// with and without 1,000 health checks a second. bench/healthz.sh runs it
// longer; here it checks generous bounds only.
func TestHealthLoad(t *testing.T) {
	agents := make([]*agent, 3)
	for i := range agents {
		agents[i] = &agent{id: fmt.Sprintf("l%d", i+1), dir: t.TempDir(), api: freePort(t), cons: freePort(t)}
		var extra []string
		if i == 0 {
			extra = []string{"--bootstrap"}
		}
		startAgent(t, agents[i], extra...)
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.kill()
		}
	})
	ep := func(a *agent) []string { return []string{"-E", "https://" + a.api, "--data-dir", agents[0].dir} }
	eventually(t, 20*time.Second, "active", append([]string{"ha", "status"}, ep(agents[0])...)...)
	for _, a := range agents[1:] {
		eventually(t, 10*time.Second, a.id, "ha", "id", "-E", "https://"+a.api, "--data-dir", a.dir)
		if out, errOut, code := run(t, append([]string{"ha", "enroll", "https://" + a.api, "--secret-file", filepath.Join(a.dir, consensus.BootstrapSecretFile)}, ep(agents[0])...)...); code != 0 {
			t.Fatalf("enroll: %s %s", out, errOut)
		}
	}
	eventually(t, 10*time.Second, "no warnings", append([]string{"ha", "status"}, ep(agents[0])...)...)
	st, err := consensus.ReadHAState(agents[0].dir)
	if err != nil {
		t.Fatal(err)
	}
	active := "https://" + agents[0].api
	hc := httpsClient(t, agents[0].dir, 5*time.Second)
	ctx := context.Background()
	d := *loadDuration

	ok, bad := hammer(ctx, hc, d, 32, func(c *http.Client) (bool, error) { return get(c, active+"/healthz/active", 200) })
	rate := float64(ok) / d.Seconds()
	t.Logf("/healthz/active: %.0f requests/s over %v (32 keep-alive clients, %d not 200)", rate, d, bad)
	if bad > 0 || rate < 2000 {
		t.Fatalf("/healthz/active answered %.0f/s with %d failures; want at least 2,000/s and none", rate, bad)
	}

	put := func(c *http.Client) (bool, error) {
		req, _ := http.NewRequest("PUT", active+route.Object("load", "k"), strings.NewReader(`{"v":1}`))
		req.Header.Set("Authorization", "Bearer "+st.Token)
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	}
	writes := func() float64 {
		ok, bad := hammer(ctx, hc, d, 16, put)
		if bad > 0 {
			t.Fatalf("%d writes failed", bad)
		}
		return float64(ok) / d.Seconds()
	}
	// 1,000 checks a second spread over the three nodes: one poller per
	// node every 3 ms on a kept-alive connection, as three load balancers
	// polling each node would. Phases alternate so that drift in the
	// machine's speed falls on both.
	// The control: the same poller against a trivial HTTP server in this
	// test process, to tell the pollers' own cost on this machine from what
	// answering them costs the nodes.
	dummy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	defer dummy.Close()
	checker := func(stop chan struct{}, n *atomic.Int64, wg *sync.WaitGroup, control bool) {
		for _, a := range agents {
			url := "https://" + a.api + "/healthz/active"
			if control {
				url = dummy.URL
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := httpsClient(t, agents[0].dir, time.Second)
				tick := time.NewTicker(3 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := get(c, url, 0); err == nil {
						n.Add(1)
					}
				}
			}()
		}
	}
	var without, with, control []float64
	var checks atomic.Int64
	for phase := 0; phase < 3*(*loadPhases); phase++ {
		if phase%3 == 0 {
			without = append(without, writes())
			continue
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var n atomic.Int64
		checker(stop, &n, &wg, phase%3 == 2)
		w := writes()
		close(stop)
		wg.Wait()
		if phase%3 == 1 {
			with = append(with, w)
			checks.Add(n.Load())
		} else {
			control = append(control, w)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	t.Logf("writes/s with 16 writers, median of %d phases of %v: %.0f without health checks, %.0f with %.0f checks/s on the nodes (ratio %.2f), %.0f with the same polling of a dummy server (ratio %.2f); phases without %v, with %v, control %v",
		len(with), d, med(without), med(with), float64(checks.Load())/(d.Seconds()*float64(len(with))), med(with)/med(without),
		med(control), med(control)/med(without), round(without), round(with), round(control))
	if med(with) < med(without)/2 {
		t.Fatalf("health checks halved the write rate: %.0f -> %.0f writes/s", med(without), med(with))
	}
}

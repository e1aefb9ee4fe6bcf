package fault

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftvip/raftvip/test/netns"
)

var (
	seedsFlag = flag.String("fault.seeds", "1,2,3", "comma-separated seeds to run")
	runFlag   = flag.Duration("fault.run", 40*time.Second, "how long the faults of one seed go on")
	totalFlag = flag.Duration("fault.total", 0, "run new seeds until this much time has passed (torture), instead of -fault.seeds")
	outFlag   = flag.String("fault.out", "", "folder for a failing seed's history and logs (default $TMPDIR/raftvip-fault/SEED)")
)

// binary is the raftvip binary under test.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if b := os.Getenv("RAFTVIP_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "raftvip-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftvip")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/raftvip").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building raftvip: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// require fails (CI) or skips (elsewhere) without the tools for a slow disk.
func require(t *testing.T) {
	netns.Require(t)
	var missing []string
	for _, tool := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install -y mount e2fsprogs)")
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device"); err != nil {
		missing = append(missing, "the cgroup v1 blkio controller at /sys/fs/cgroup/blkio (for the slow disk)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "the fault suite needs " + strings.Join(missing, " and ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestFaults runs the workload under the nemesis for each seed, heals, and
// checks the history.
func TestFaults(t *testing.T) {
	require(t)
	if *totalFlag > 0 {
		end := time.Now().Add(*totalFlag)
		for time.Now().Before(end) {
			seed := uint64(time.Now().UnixNano())
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runSeed(t, seed) })
		}
		return
	}
	for _, s := range strings.Split(*seedsFlag, ",") {
		seed, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			t.Fatalf("-fault.seeds: %q is not a number", s)
		}
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runSeed(t, seed) })
	}
}

func runSeed(t *testing.T, seed uint64) {
	c := newCluster(t)
	h := newHistory()
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watchers{c: c, h: h}
	w.start(ctx)
	// Clients: three through the VIP, one on each voter directly (each
	// asks its node; a passive node forwards, or serves ?stale itself),
	// and a reader of linearizable gets on each voter.
	var wg sync.WaitGroup
	targets := []string{vip, vip, vip, c.hosts[0].Addr4, c.hosts[1].Addr4, c.hosts[2].Addr4,
		c.hosts[0].Addr4, c.hosts[1].Addr4, c.hosts[2].Addr4}
	for i, tg := range targets {
		cl := &client{c: c, h: h, id: i, target: tg + ":" + apiPort, direct: tg != vip, reader: i >= 6,
			rng: rand.New(rand.NewPCG(seed, uint64(i+1))), revs: map[string]uint64{}}
		wg.Add(1)
		go func() { defer wg.Done(); cl.run(ctx) }()
	}
	nem := &nemesis{c: c, rng: rng, h: h, blocks: map[[2]int]int{}, down: map[int]bool{},
		changes: make(chan memberChange, 1), restarted: make(chan int, 4)}
	t.Logf("seed %d: faults for %v", seed, *runFlag)
	for end := time.Now().Add(*runFlag); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		nem.tick()
	}
	nem.healAll()
	var bad []string
	add := func(what string, vs []string) {
		for _, v := range vs {
			bad = append(bad, what+": "+v)
		}
	}
	// Healed: the cluster must recover and make progress while the
	// workload goes on, then settle once the workload has stopped.
	var healed int64
	for deadline := time.Now().Add(90 * time.Second); c.active() < 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			bad = append(bad, "no node became active within 90 s of the heal")
			break
		}
	}
	healed = h.now()
	nem.logf("healed, a node is active; the workload goes on for 3 s")
	time.Sleep(3 * time.Second) // a span of workload on the healed cluster, checked for progress below
	cancel()
	wg.Wait()
	w.wait()
	sts, err := c.settled(90 * time.Second)
	if err != nil {
		bad = append(bad, err.Error())
	} else {
		for _, st := range sts[1:] {
			if st.StateHash != sts[0].StateHash {
				bad = append(bad, fmt.Sprintf("state hash of %s at index %d differs from %s's", st.ID, st.AppliedIndex, sts[0].ID))
			}
		}
	}
	out := *outFlag
	if out == "" {
		out = filepath.Join(os.TempDir(), "raftvip-fault", strconv.FormatUint(seed, 10))
	}
	_ = os.MkdirAll(out, 0o755)
	h.mu.Lock()
	ops := append([]op(nil), h.ops...)
	add("during the run", h.bad)
	h.mu.Unlock()
	add("objects", checkObjects(ops, out))
	add("stale reads", checkStale(ops))
	if err == nil {
		add("job log", checkLog(c, ops))
		add("files", checkFiles(c, h, ops))
	}
	add("VIP owners", checkClaims(w.claims))
	add("ARP", w.arp)

	counts := map[string]map[string]int{}
	for _, o := range ops {
		if counts[o.Type] == nil {
			counts[o.Type] = map[string]int{}
		}
		counts[o.Type][o.Outcome]++
	}
	acked := 0
	for _, o := range ops {
		if o.Outcome == ok && o.Call > healed && isWrite(o.Type) {
			acked++
		}
	}
	t.Logf("seed %d: %d operations %v; %d claims of the active role, %d ARP requests answered; faults:\n%s",
		seed, len(ops), counts, len(w.claims), w.arpN, strings.Join(nem.log, "\n"))
	if acked == 0 {
		bad = append(bad, "no write was acknowledged after the heal: the cluster made no progress")
	}
	if len(bad) == 0 {
		_ = os.RemoveAll(out)
		return
	}
	save(out, "history.json", ops)
	save(out, "claims.json", w.claims)
	_ = os.WriteFile(filepath.Join(out, "nemesis.log"), []byte(strings.Join(nem.log, "\n")+"\n"), 0o644)
	for _, l := range c.allLogs() {
		name := strings.NewReplacer("== ", "", "/", "-", " ", "-", "(", "", ")", "").Replace(l[0]) + ".log"
		_ = os.WriteFile(filepath.Join(out, name), []byte(strings.Join(l[1:], "\n")+"\n"), 0o644)
	}
	if len(bad) > 30 {
		bad = append(bad[:30], fmt.Sprintf("... and %d more", len(bad)-30))
	}
	t.Fatalf("seed %d failed (replay: go test ./test/fault -run TestFaults -args -fault.seeds %d -fault.run %v); history, visualisation and logs in %s:\n%s",
		seed, seed, *runFlag, out, strings.Join(bad, "\n"))
}

func save(dir, name string, v any) {
	b, _ := json.MarshalIndent(v, "", " ")
	_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

var (
	fileSize   = flag.Int64("file-size", 128<<20, "size of each generated file in TestFileReplication (bench/files.sh sets 1 GiB)")
	fileCount  = flag.Int("file-count", 2, "how many files TestFileReplication uploads before the 4th node enrols")
	fileReport = flag.Bool("file-report", false, "TestFileReplication: also report disk rate, upload rate, peak RSS and snapshot times")
)

// cliCluster starts n agent processes on loopback and forms a cluster
// with the CLI; it returns them, the first one active.
func cliCluster(t *testing.T, n int, prefix string) []*agent {
	t.Helper()
	agents := make([]*agent, n)
	for i := range agents {
		agents[i] = &agent{id: fmt.Sprintf("%s%d", prefix, i+1), dir: t.TempDir()}
		var extra []string
		if i == 0 {
			extra = []string{"--bootstrap"}
		}
		startListening(t, agents[i], extra...)
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.kill()
		}
	})
	ep := agents[0].endpoint(agents[0])
	eventually(t, 20*time.Second, "active", append([]string{"ha", "status"}, ep...)...)
	for _, a := range agents[1:] {
		enroll(t, agents[0], a)
	}
	return agents
}

// startListening starts agent a on free ports and waits until its API
// accepts connections. A port found free can be taken by another test's
// connection before the agent binds it: then it tries other ports (three
// times at most). Any other early exit fails the test with the agent's log.
func startListening(t *testing.T, a *agent, extra ...string) {
	t.Helper()
	for try := 1; ; try++ {
		a.api, a.cons = freePort(t), freePort(t)
		startAgent(t, a, extra...)
		if listening(a, 20*time.Second) {
			return
		}
		select {
		case <-a.done:
		default:
			a.kill()
			t.Fatalf("agent %s: its API did not listen within 20s; its log:\n%s", a.id, a.log)
		}
		if !strings.Contains(a.log.String(), "address already in use") || try == 3 {
			t.Fatalf("agent %s exited at start (try %d); its log:\n%s", a.id, try, a.log)
		}
		t.Logf("agent %s: a port was taken before it could bind it; trying others", a.id)
	}
}

// listening waits until agent a's API accepts connections (true), or it
// exits or the time is up (false).
func listening(a *agent, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", a.api, time.Second); err == nil {
			c.Close()
			return true
		}
		select {
		case <-a.done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

func (a *agent) endpoint(tokenFrom *agent) []string {
	return []string{"-E", "https://" + a.api, "--data-dir", tokenFrom.dir}
}

func enroll(t *testing.T, via, a *agent) {
	t.Helper()
	// Not in the cluster yet: only its own data dir (its bootstrap
	// secret, which names its certificate) verifies it.
	eventually(t, 10*time.Second, a.id, append([]string{"ha", "id"}, a.endpoint(a)...)...)
	if out, errOut, code := run(t, append([]string{"ha", "enroll", "https://" + a.api, "--secret-file", filepath.Join(a.dir, consensus.BootstrapSecretFile)}, via.endpoint(via)...)...); code != 0 {
		t.Fatalf("enroll %s: %s %s", a.id, out, errOut)
	}
}

// genFile writes size bytes of pseudo-random data and returns its SHA-256.
func genFile(t *testing.T, path string, size int64, seed uint64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, 42))
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := int64(len(buf))
		if left < n {
			n = left
		}
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		h.Write(buf[:n])
		left -= n
	}
	// On disk before anything is timed: its writeback would otherwise
	// compete with what is.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (a *agent) blobPath(sha string) string {
	return filepath.Join(a.dir, "store", "blobs", sha[:2], sha)
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cpuTime is the CPU time (user + system) a process has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ
}

// clusterCPU is the CPU time used so far by the agents and this process.
func clusterCPU(agents []*agent) time.Duration {
	d := cpuTime(os.Getpid())
	for _, a := range agents {
		d += cpuTime(a.cmd.Process.Pid)
	}
	return d
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// TestFileReplication uploads files to three agent processes: when each
// upload returns a quorum holds it whole, soon every node does; a 4th node
// enrolled afterwards fetches every file and its hashes match. With
// -file-report it also reports the disk's own rate, the upload rate, each
// node's peak RSS and the snapshot time with and without the files.
func TestFileReplication(t *testing.T) {
	var quiet []float64  // dd into fresh pages, before the cluster starts
	var recycled float64 // dd into pages just freed by deleting a GiB
	if *fileReport {
		// Three runs, each file kept until all are done: every run needs
		// fresh pages, as every upload does (blobs are kept). A first run,
		// not counted, takes up what was freed just before (the build).
		qdir := t.TempDir()
		r, sys := diskRate(t, filepath.Join(qdir, "warm-up"), true)
		t.Logf("dd warm-up (into whatever memory was freed before the test): %.1f MiB/s, %.1f s of kernel CPU", r, sys.Seconds())
		for i := range 3 {
			r, sys := diskRate(t, filepath.Join(qdir, fmt.Sprintf("dd%d", i)), true)
			quiet = append(quiet, r)
			t.Logf("dd %d (files kept): %.1f MiB/s, %.1f s of kernel CPU", i, r, sys.Seconds())
		}
		os.Remove(filepath.Join(qdir, "warm-up"))
		for i := range 3 {
			os.Remove(filepath.Join(qdir, fmt.Sprintf("dd%d", i)))
		}
		r, sys = diskRate(t, filepath.Join(qdir, "dd"), false)
		recycled = r
		t.Logf("dd right after 4 GiB were deleted (into recycled pages): %.1f MiB/s, %.1f s of kernel CPU", r, sys.Seconds())
		slices.Sort(quiet)
		t.Logf("dd before the cluster starts: %.1f MiB/s (median of 3; min %.1f, max %.1f)", quiet[1], quiet[0], quiet[2])
	}
	agents := cliCluster(t, 3, "r")
	ep := agents[0].endpoint(agents[0])
	// Put something in the log so that there is something to snapshot.
	run(t, append([]string{"objects", "put", "k", "a", `{"v":1}`}, ep...)...)
	snapNone := snapshotMedian(t, agents[0])
	dir := t.TempDir()
	var shas []string
	term0 := clusterTerm(t, ep)
	var allWrites writeLatencies // small writes during the timed uploads
	var rates []float64          // MiB/s of each timed upload
	var ratios []float64         // each timed upload's rate / the disk's own rate just before it
	// Elections while a timed upload ran and every node took its copy, and
	// while the dd before it ran (another process loading the same disk).
	var uploadTerm, uploadElections, ddElections uint64
	for i := 0; i < *fileCount; i++ {
		src := filepath.Join(dir, fmt.Sprintf("f%d.bin", i))
		sha := genFile(t, src, *fileSize, uint64(i+1))
		if i == 0 {
			// The first through the CLI and a passive node (forwarded as a
			// stream), the rest timed as bare PUTs to the active node (the
			// CLI first reads the whole file to hash it).
			via := agents[1]
			out, errOut, code := run(t, append([]string{"isos", "upload", src, fmt.Sprintf("set/f%d.bin", i)}, via.endpoint(agents[0])...)...)
			if code != 0 || !strings.Contains(out, sha) {
				t.Fatalf("upload %d: %s %s", i, out, errOut)
			}
		} else {
			var disk float64
			var stop chan struct{}
			var writes chan writeLatencies
			if *fileReport {
				var sys time.Duration
				before := clusterTerm(t, ep)
				disk, sys = diskRate(t, filepath.Join(dir, "dd"), true)
				t.Logf("file %d: dd just before it: %.1f MiB/s, %.1f s of kernel CPU", i, disk, sys.Seconds())
				uploadTerm = clusterTerm(t, ep)
				ddElections += uploadTerm - before
				stop, writes = make(chan struct{}), make(chan writeLatencies, 1)
				c := httpsClient(t, agents[0].dir, 10*time.Second)
				go func() { writes <- writesDuring(c, agents[0], tokenOf(t, agents[0]), stop) }()
			}
			cpu0, t0 := clusterCPU(agents), time.Now()
			putFile(t, agents[0], tokenOf(t, agents[0]), src, fmt.Sprintf("set/f%d.bin", i), sha)
			wall := time.Since(t0)
			if *fileReport {
				close(stop)
				w := <-writes
				allWrites.lat = append(allWrites.lat, w.lat...)
				allWrites.failed += w.failed
				t.Logf("file %d: small writes during the upload: %s", i, w)
			}
			rates = append(rates, float64(*fileSize)/(1<<20)/wall.Seconds())
			os.Remove(filepath.Join(dir, "dd"))
			if *fileReport {
				cpu := clusterCPU(agents) - cpu0
				t.Logf("file %d: CPU used by the nodes and the client during the upload: %.1f s in %.1f s (%.0f%% of %d cores)",
					i, cpu.Seconds(), wall.Seconds(), 100*cpu.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())
			}
			if disk > 0 {
				ratios = append(ratios, rates[len(rates)-1]/disk)
			}
		}
		holders := 0
		for _, a := range agents {
			if hashFile(t, a.blobPath(sha)) == sha {
				holders++
			}
		}
		if holders < 2 {
			t.Fatalf("file %d: only %d nodes hold it whole when the upload returned", i, holders)
		}
		shas = append(shas, sha)
		os.Remove(src)
		// Every node holds it soon after; the next upload starts then.
		t0 := time.Now()
		for _, a := range agents {
			deadline := time.Now().Add(120 * time.Second)
			for hashFile(t, a.blobPath(sha)) != sha {
				if time.Now().After(deadline) {
					t.Fatalf("%s never got %s", a.id, sha)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if i > 0 {
			t.Logf("file %d: upload %.1f MiB/s; every node held it %v after the upload returned", i, rates[len(rates)-1], time.Since(t0).Round(time.Millisecond))
		}
		if i > 0 && *fileReport {
			// From the end of the dd to every node holding the file.
			if e := clusterTerm(t, ep) - uploadTerm; e > 0 {
				uploadElections += e
				t.Logf("file %d: %d elections during the upload", i, e)
			}
		}
	}
	if *fileReport {
		// A follower whose disk is busy with an upload answers heartbeats
		// late; past the leader lease the leader steps down. Count it.
		term := clusterTerm(t, ep)
		t.Logf("Raft term before the first upload %d, after the last %d: %d elections, %d of them during the uploads (from the end of the dd before each to every node holding it) and %d during the dd runs",
			term0, term, term-term0, uploadElections, ddElections)
		t.Logf("small writes during all timed uploads: %s", allWrites)
	}
	var rss []string
	for _, a := range agents {
		rss = append(rss, fmt.Sprintf("%s %d MiB", a.id, peakRSS(a.cmd.Process.Pid)>>20))
	}
	// A 4th node enrols and fetches everything.
	late := &agent{id: "r4", dir: t.TempDir(), api: freePort(t), cons: freePort(t)}
	startAgent(t, late)
	t.Cleanup(late.kill)
	enroll(t, agents[0], late)
	// While it fetches, ha status shows its file lag and the progress.
	var seen []string
	for _, sha := range shas {
		deadline := time.Now().Add(120 * time.Second)
		for hashFile(t, late.blobPath(sha)) != sha {
			if time.Now().After(deadline) {
				t.Fatalf("the late node never got %s", sha)
			}
			out, _, _ := run(t, append([]string{"ha", "status"}, ep...)...)
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "r4 ") && strings.Contains(l, "fetched)") {
					lag := strings.SplitN(strings.SplitN(l, "(", 2)[1], ")", 2)[0]
					if len(seen) == 0 || seen[len(seen)-1] != lag {
						seen = append(seen, lag)
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(seen) > 0 {
		t.Logf("the 4th node's file lag in ha status while it fetched: %s", strings.Join(seen, " | "))
	}
	// ha status shows no file lag on any node.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, _ := run(t, append([]string{"ha", "status"}, ep...)...)
		if strings.Contains(out, "r4  passive") && !strings.Contains(out, "lacks the contents") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ha status still shows a file lag:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := int64(*fileCount) * *fileSize
	rate := "not timed (one file)"
	if len(rates) > 0 {
		slices.Sort(rates)
		rate = fmt.Sprintf("%.1f MiB/s (median of %d; min %.1f, max %.1f)", rates[len(rates)/2], len(rates), rates[0], rates[len(rates)-1])
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		t.Logf("upload rate / the disk's own rate (dd into fresh pages just before each upload, pair by pair): median %.0f%% (min %.0f%%, max %.0f%%; goal 40%%)",
			100*ratios[len(ratios)/2], 100*ratios[0], 100*ratios[len(ratios)-1])
		t.Logf("upload rate / dd before the cluster started: %.0f%% (if much was deleted a few seconds before, as by a run just before this one, those dd runs get recycled pages too: see their kernel CPU)",
			100*rates[len(rates)/2]/quiet[1])
		t.Logf("upload rate / dd into recycled pages (not like an upload, shown for comparison): %.0f%%", 100*rates[len(rates)/2]/recycled)
	}
	t.Logf("%d files of %d MiB: upload %s into three nodes; peak RSS %s; the 4th node fetched all %d",
		*fileCount, *fileSize>>20, rate, strings.Join(rss, ", "), len(shas))
	if *fileReport {
		run(t, append([]string{"objects", "put", "k", "b", `{"v":2}`}, ep...)...)
		snapFiles := snapshotMedian(t, agents[0])
		t.Logf("snapshot (median of 5): %v with no files, %v with %d MiB of files (ratio %.2f)", snapNone, snapFiles, total>>20, snapFiles.Seconds()/snapNone.Seconds())
	}
}

// diskRate is the disk's own sequential write rate in MiB/s: dd writing
// 1 GiB of zeros to out with fdatasync at the end. It also returns the
// kernel CPU dd used. keep leaves dd's file (the caller removes it).
//
// On a virtual machine whose free memory is handed back to the host (free
// page reporting), dd's rate depends on the memory more than on the disk: a
// GiB written into pages that were freed a moment ago (a file was just
// deleted) goes about twice as fast, with a quarter of the kernel CPU, as a
// GiB that needs fresh pages, which the host must fault in one by one. An
// upload always needs fresh pages: blobs are kept. So the disk's rate that
// an upload is compared with is dd into fresh pages: dd runs that do not
// follow a deletion, and keep their files until measured.
func diskRate(t *testing.T, out string, keep bool) (float64, time.Duration) {
	t.Helper()
	t0 := time.Now()
	cmd := exec.Command("dd", "if=/dev/zero", "of="+out, "bs=1M", "count=1024", "conv=fdatasync")
	b, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if !keep {
		os.Remove(out)
	}
	if err != nil {
		t.Fatalf("dd: %v %s", err, b)
	}
	return 1024 / d.Seconds(), cmd.ProcessState.SystemTime()
}

// clusterTerm is the Raft term that `ha status` reports.
func clusterTerm(t *testing.T, ep []string) uint64 {
	t.Helper()
	out, errOut, code := run(t, append([]string{"ha", "status", "--json"}, ep...)...)
	var st struct {
		Term uint64 `json:"term"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Term == 0 {
		t.Fatalf("ha status: %v %s %s", err, out, errOut)
	}
	return st.Term
}

// snapshotMedian is the median time of 5 snapshots taken in a row.
func snapshotMedian(t *testing.T, a *agent) time.Duration {
	t.Helper()
	var ds []time.Duration
	for range 5 {
		ds = append(ds, snapshotVia(t, a))
	}
	slices.Sort(ds)
	return ds[2]
}

func snapshotVia(t *testing.T, a *agent) time.Duration {
	t.Helper()
	out, errOut, code := run(t, "debug", "probe", "--url", "https://"+a.api+route.HASnapshot, "--data-dir", a.dir, "--method", "POST",
		"--header", "Authorization: Bearer "+tokenOf(t, a), "--duration", "1ms", "--interval", "1s") // one request, 5 s to answer
	if code != 0 || !strings.Contains(out, `"status":200`) {
		t.Fatalf("snapshot: %s %s", out, errOut)
	}
	var r struct {
		RTTus int64 `json:"rtt_us"`
	}
	_ = json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &r)
	return time.Duration(r.RTTus) * time.Microsecond
}

func tokenOf(t *testing.T, a *agent) string {
	b, err := os.ReadFile(filepath.Join(a.dir, "ha-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Token string }
	_ = json.Unmarshal(b, &st)
	return st.Token
}

// putFile uploads a file with a bare HTTP PUT, streamed from disk.
// writeLatencies are the latencies of small writes, and how many failed.
type writeLatencies struct {
	lat    []time.Duration
	failed int
}

func (w writeLatencies) String() string {
	if len(w.lat) == 0 {
		return fmt.Sprintf("none answered, %d failed", w.failed)
	}
	l := slices.Clone(w.lat)
	slices.Sort(l)
	q := func(p float64) time.Duration { return l[int(p*float64(len(l)-1))].Round(100 * time.Microsecond) }
	return fmt.Sprintf("%d writes, p50 %v, p99 %v, max %v, %d failed", len(l), q(0.5), q(0.99), l[len(l)-1].Round(100*time.Microsecond), w.failed)
}

// writesDuring puts a small object on a's API every 50 ms until stop is
// closed (at most 10 minutes) and returns each write's latency: what a
// user's writes see while an upload runs.
func writesDuring(c *http.Client, a *agent, token string, stop <-chan struct{}) writeLatencies {
	var w writeLatencies
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(10 * time.Minute)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-stop:
			return w
		case <-tick.C:
		}
		req, _ := http.NewRequest("PUT", "https://"+a.api+route.Object("probe", "w"), strings.NewReader(fmt.Sprintf(`{"i":%d}`, i)))
		req.Header.Set("Authorization", "Bearer "+token)
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			w.failed++
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			w.failed++
			continue
		}
		w.lat = append(w.lat, time.Since(t0))
	}
	return w
}

func putFile(t *testing.T, a *agent, token, src, remote, sha string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	req, _ := http.NewRequest("PUT", "https://"+a.api+route.File("isos", remote), f)
	req.ContentLength = st.Size()
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Checksum-Sha256", sha)
	resp, err := httpsClient(t, a.dir, 0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), sha) {
		t.Fatalf("PUT %s: %d %s", remote, resp.StatusCode, b)
	}
}

// TestFileUploadKilled: kill -9 of the active node in the middle of a
// 256 MiB upload: the client gets an error, the file is visible nowhere,
// and the retry on the new active node succeeds, byte-identical.
func TestFileUploadKilled(t *testing.T) {
	agents := cliCluster(t, 3, "k")
	token := tokenOf(t, agents[0])
	src := filepath.Join(t.TempDir(), "big.bin")
	sha := genFile(t, src, 256<<20, 9)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Feed the upload slowly enough to kill the node in its middle.
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 1<<20)
		for sent := 0; ; sent++ {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if sent == 64 {
				agents[0].kill() // the active node dies with 64 MiB received
			}
		}
	}()
	req, _ := http.NewRequest("PUT", "https://"+agents[0].api+route.File("isos", "big.bin"), pr)
	req.ContentLength = 256 << 20
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpsClient(t, agents[0].dir, 0).Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the interrupted upload succeeded")
		}
	}
	pr.Close()
	// A survivor becomes active; the file is visible nowhere.
	var next *agent
	deadline := time.Now().Add(20 * time.Second)
	for next == nil {
		for _, a := range agents[1:] {
			if out, _, code := run(t, append([]string{"ha", "active"}, a.endpoint(agents[0])...)...); code == 0 && strings.TrimSpace(out) == a.id {
				next = a
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no survivor became active")
		}
	}
	for _, a := range agents[1:] {
		if _, errOut, code := run(t, append([]string{"isos", "download", "big.bin", "-"}, a.endpoint(agents[0])...)...); code == 0 || !strings.Contains(errOut, "404") {
			t.Fatalf("the interrupted upload is visible on %s: %d %s", a.id, code, errOut)
		}
	}
	putFile(t, next, token, src, "big.bin", sha)
	dst := filepath.Join(t.TempDir(), "copy.bin")
	if _, errOut, code := run(t, append([]string{"isos", "download", "big.bin", dst}, next.endpoint(agents[0])...)...); code != 0 {
		t.Fatalf("download after the retry: %s", errOut)
	}
	if hashFile(t, dst) != sha {
		t.Fatal("the retried upload does not match")
	}
}

func TestFileLagColumn(t *testing.T) {
	for _, c := range []struct {
		s    consensus.NodeStatus
		want string
	}{
		{consensus.NodeStatus{}, "0"},
		{consensus.NodeStatus{FilesMissing: 3, FilesMissingBytes: 2 << 30, FilesFetchedBytes: 1 << 29}, "3 (2.0 GiB, 25% fetched)"},
		{consensus.NodeStatus{FilesMissing: 1}, "1 (0 B, 0% fetched)"},
	} {
		if got := fileLag(&c.s); got != c.want {
			t.Errorf("fileLag(%+v) = %q, want %q", c.s, got, c.want)
		}
	}
}

package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/test/netns"
)

const (
	vip     = "198.18.0.100"
	apiPort = "8092"
	voters  = 3 // n1..n3; n4 is the spare that membership faults enroll and remove
	slowIdx = 2 // n3's data directory is on a loop device that can be throttled
)

// cluster is the system under test: agents n1-n4 and a client host.
type cluster struct {
	t      *testing.T
	net    *netns.Net
	hosts  []*netns.Host
	client *netns.Host
	mu     sync.Mutex
	agents []*netns.Proc
	dirs   []string
	logs   [][]string // output of agents that were killed or replaced
	token  string
	http   *http.Client       // from the client's namespace
	trust  consensus.APITrust // the cluster CA
	loop   string             // n3's loop device
	member [4]bool            // whether n(i+1) is in the cluster (as far as the nemesis made it)
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, net: netns.New(t)}
	for i := 1; i <= 4; i++ {
		c.hosts = append(c.hosts, c.net.AddHost(fmt.Sprintf("n%d", i), i))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.client = c.net.AddHost("client", 10)
	c.http = &http.Client{Transport: &http.Transport{DialContext: nsDialer(t, c.client.NS), DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c.slowDisk(slowIdx)
	c.agents = make([]*netns.Proc, 4)
	c.start(0, "--bootstrap")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := consensus.ReadHAState(c.dirs[0]); err == nil && st.Valid && st.Token != "" {
			c.token = st.Token
			// The API is TLS: trust the cluster CA n1 made.
			pool, cluster, err := consensus.ReadCA(filepath.Join(c.dirs[0], "tls", "ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			c.trust = consensus.APITrust{Roots: pool, ClusterCA: cluster}
			tr := c.trust.Transport(nsDialer(t, c.client.NS))
			tr.DisableKeepAlives = true
			c.http.Transport = tr
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n1 did not write a valid ha-state.json")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.member[0] = true
	for i := 1; i < 4; i++ {
		c.start(i)
	}
	for i := 1; i < voters; i++ {
		if err := c.enroll(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, a := range c.agents {
			if a != nil {
				a.Kill()
			}
		}
	})
	return c
}

// nsDialer dials from namespace ns: each dial runs on an OS thread that
// enters the namespace (a socket stays in the namespace it was made in) and
// goes back to the test's own namespace afterwards (inNS).
func nsDialer(t *testing.T, ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// inNS runs f on a locked OS thread inside network namespace ns, then
// returns the thread to the namespace it came from. The thread must never
// end while it is elsewhere, nor end at all: a child process started with
// Pdeathsig (every agent) is killed when the thread that forked it ends, and
// a locked goroutine that returns ends its thread. If the way back fails
// (it cannot, short of the kernel refusing a namespace the thread just
// left), the goroutine parks for good with its thread.
func inNS(ns string, f func() error) error {
	target, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		select {} // keep this thread, in the wrong namespace, out of use
	}
	runtime.UnlockOSThread()
	return ferr
}

// slowDisk puts node i's data directory on an ext4 file system on a loop
// device, whose writes the nemesis can throttle.
func (c *cluster) slowDisk(i int) {
	t := c.t
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	c.loop = strings.TrimSpace(string(out))
	c.throttle(0) // a crashed run may have left a rule for this device number
	t.Cleanup(func() {
		c.throttle(0)
		if a := c.agents[i]; a != nil {
			a.Kill() // before the file system goes
		}
		_ = exec.Command("umount", c.dirs[i]).Run()
		_ = exec.Command("losetup", "-d", c.loop).Run()
	})
	for _, args := range [][]string{{"mkfs.ext4", "-q", c.loop}, {"mount", c.loop, c.dirs[i]}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.Chmod(c.dirs[i], 0o700); err != nil {
		t.Fatal(err)
	}
}

// throttle limits writes to the loop device to iops a second (0: no limit),
// for every task, the file system's journal included (the root blkio
// cgroup's rule for that one device).
func (c *cluster) throttle(iops int) {
	var st unix.Stat_t
	if err := unix.Stat(c.loop, &st); err != nil {
		return
	}
	rdev := st.Rdev
	rule := fmt.Sprintf("%d:%d %d", unix.Major(rdev), unix.Minor(rdev), iops)
	if err := os.WriteFile("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device", []byte(rule), 0); err != nil {
		c.t.Logf("throttle %s: %v", rule, err)
	}
}

func (c *cluster) start(i int, extra ...string) {
	h := c.hosts[i]
	args := append([]string{binary, "agent", "--data-dir", c.dirs[i], "--node-id", h.Name,
		"--consensus-addr", h.Addr4 + ":8093", "--api-addr", "0.0.0.0:" + apiPort, "--api-url", "https://" + h.Addr4 + ":" + apiPort,
		"--virt-interface", "eth0", "--vip", vip + "/24"}, extra...)
	p := h.Start("agent", args...)
	c.mu.Lock()
	if old := c.agents[i]; old != nil {
		c.logs = append(c.logs, append([]string{"== " + old.Name + " (earlier run)"}, old.Lines()...))
	}
	c.agents[i] = p
	c.mu.Unlock()
}

func (c *cluster) agent(i int) *netns.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.agents[i]
}

// cli runs the raftvip CLI in the client's namespace against the VIP.
func (c *cluster) cli(args ...string) (string, error) {
	return c.client.Run(append([]string{binary}, append(args, "-E", "https://"+vip+":"+apiPort, "--data-dir", c.dirs[0])...)...)
}

// enroll adds node i (an unjoined agent) to the cluster, retrying through
// failovers for up to 60 s.
func (c *cluster) enroll(i int) error {
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err := c.cli("ha", "enroll", "https://"+c.hosts[i].Addr4+":"+apiPort, "--secret-file", filepath.Join(c.dirs[i], consensus.BootstrapSecretFile))
		if err == nil || strings.Contains(out, "already") {
			c.member[i] = true
			return nil
		}
		last = out
	}
	return fmt.Errorf("enroll n%d: %s", i+1, last)
}

// nodeStatus is the part of /api/v1/ha/node the suite reads.
type nodeStatus struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	Active       bool   `json:"active"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	StateHash    string `json:"state_hash"`
	FilesMissing int    `json:"files_missing"`
}

// status asks node i (not through the VIP) for its own status.
func (c *cluster) status(i int) (nodeStatus, error) {
	var st nodeStatus
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.hosts[i].Addr4+":"+apiPort+route.HANode, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// active returns the index of the active node, or -1.
func (c *cluster) active() int {
	for i := range c.hosts {
		if st, err := c.status(i); err == nil && st.Active {
			return i
		}
	}
	return -1
}

// members asks node i for the cluster's members and returns their indexes.
func (c *cluster) members(i int) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+c.hosts[i].Addr4+":"+apiPort+route.HAMembers, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ms []struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, fmt.Errorf("members: %d: %w", resp.StatusCode, err)
	}
	var out []int
	for _, m := range ms {
		for j, h := range c.hosts {
			if h.Name == m.ID {
				out = append(out, j)
			}
		}
	}
	return out, nil
}

// settled waits until one node is active and every member (as the active
// node lists them) has applied the same index with no file missing, and
// returns their statuses.
func (c *cluster) settled(within time.Duration) ([]nodeStatus, error) {
	last := "no active node"
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		act := c.active()
		if act < 0 {
			last = "no active node"
			continue
		}
		ms, err := c.members(act)
		if err != nil {
			last = err.Error()
			continue
		}
		var sts []nodeStatus
		ok := true
		for _, i := range ms {
			st, err := c.status(i)
			if err != nil {
				ok, last = false, fmt.Sprintf("n%d: %v", i+1, err)
				break
			}
			switch {
			case st.FilesMissing > 0:
				ok, last = false, fmt.Sprintf("n%d misses %d files", i+1, st.FilesMissing)
			case len(sts) > 0 && st.AppliedIndex != sts[0].AppliedIndex:
				ok, last = false, fmt.Sprintf("n%d applied %d (n%d %d)", i+1, st.AppliedIndex, ms[0]+1, sts[0].AppliedIndex)
			}
			sts = append(sts, st)
		}
		if ok {
			for i := range c.member {
				c.member[i] = false
			}
			for _, i := range ms {
				c.member[i] = true
			}
			return sts, nil
		}
	}
	return nil, fmt.Errorf("the cluster did not settle within %v: %s", within, last)
}

// allLogs returns every agent's output, earlier runs included.
func (c *cluster) allLogs() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([][]string(nil), c.logs...)
	for _, a := range c.agents {
		if a != nil {
			out = append(out, append([]string{"== " + a.Name}, a.Lines()...))
		}
	}
	return out
}

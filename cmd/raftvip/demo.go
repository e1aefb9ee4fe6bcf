package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftvip/raftvip/api"
	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

type demoOptions struct {
	dir      string
	keep     bool
	timing   string
	loopback bool
}

func newDemoCmd() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a three-node cluster on this machine, kill the active node and watch another take over",
		Long: `As root (with iproute2): build a bridge, three nodes and a client in network
namespaces (198.18.0.0/24), run a raftvip agent on each with the VIP
198.18.0.100, show the VIP on the active node, kill -9 it while the client
requests the VIP every 10 ms, and print how long the VIP was dark and which
node took over.

Otherwise, or with --loopback: start three agents on loopback ports, form a
cluster, write an object, show it on every node, kill -9 the active node,
measure how long until another node is active and serves the object, and
restart the killed node, which rejoins. Everything is removed at the end
unless --keep is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, ok := consensus.Profiles[o.timing]; !ok {
				return fmt.Errorf("--timing %q must be default or fast", o.timing)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if !o.loopback {
				ok, why := netnsPossible()
				if ok {
					return runNetnsDemo(ctx, cmd.OutOrStdout(), o)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "The demo with a VIP runs in network namespaces, but %s.\nRunning the loopback demo instead (no VIP).\n\n", why)
			}
			return runDemo(ctx, cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", "", "directory for the nodes' data and logs (default: a new temporary one)")
	cmd.Flags().BoolVar(&o.keep, "keep", false, "keep the data directory at the end")
	cmd.Flags().StringVar(&o.timing, "timing", "fast", "timing profile of the nodes: default or fast")
	cmd.Flags().BoolVar(&o.loopback, "loopback", false, "run the loopback demo even as root")
	return cmd
}

// demoNode is one agent process of the demo.
type demoNode struct {
	id, dir, apiAddr, consAddr string
	cmd                        *exec.Cmd
	done                       chan struct{}
}

func (d *demoNode) url() string { return "https://" + d.apiAddr }

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (d *demoNode) start(exe, timing string, extra ...string) error {
	logf, err := os.OpenFile(filepath.Join(d.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	args := append([]string{"agent", "--data-dir", d.dir, "--node-id", d.id, "--consensus-addr", d.consAddr,
		"--api-addr", d.apiAddr, "--timing", timing}, extra...)
	d.cmd = exec.Command(exe, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", d.id, err)
	}
	d.done = make(chan struct{})
	go func() {
		_ = d.cmd.Wait()
		logf.Close()
		close(d.done)
	}()
	return nil
}

func (d *demoNode) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop ends the process: SIGTERM (a graceful stop), then SIGKILL after a while.
func (d *demoNode) stop() {
	if !d.running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *demoNode) kill() {
	if d.running() {
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *demoNode) client(token string) *client {
	c, _ := (&clientOptions{endpoint: d.url(), token: token, dataDir: d.dir, timeout: 5 * time.Second}).client()
	return c
}

func (d *demoNode) status(ctx context.Context) (consensus.NodeStatus, error) {
	var st consensus.NodeStatus
	_, err := d.client("").Do(ctx, "GET", route.HANode, nil, &st)
	return st, err
}

// poll calls cond every 10 ms until it is true or the deadline passes.
func poll(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: not within %v", what, within)
			}
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// demoSetup finds this binary and the demo's data directory; done removes
// the directory, unless --keep was given or the demo failed.
func demoSetup(out io.Writer, o *demoOptions) (exe, dir string, say func(string, ...any), done func(error), err error) {
	if exe, err = os.Executable(); err != nil {
		return "", "", nil, nil, err
	}
	dir = o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "raftvip-demo-"); err != nil {
			return "", "", nil, nil, err
		}
	}
	say = func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	done = func(err error) {
		if o.keep || err != nil {
			say("data and logs kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}
	return exe, dir, say, done, nil
}

func runDemo(ctx context.Context, out io.Writer, o *demoOptions) (err error) {
	exe, dir, say, done, err := demoSetup(out, o)
	if err != nil {
		return err
	}
	nodes := make([]*demoNode, 3)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.stop()
			}
		}
		done(err)
	}()
	for i := range nodes {
		api, err := freeLoopbackPort()
		if err != nil {
			return err
		}
		cons, err := freeLoopbackPort()
		if err != nil {
			return err
		}
		n := &demoNode{id: "node" + strconv.Itoa(i+1), dir: filepath.Join(dir, "node"+strconv.Itoa(i+1)), apiAddr: api, consAddr: cons}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return err
		}
		nodes[i] = n
	}
	say("== starting three agents on loopback (timing profile %q)", o.timing)
	for i, n := range nodes {
		var extra []string
		if i == 0 {
			extra = []string{"--bootstrap"}
		}
		if err := n.start(exe, o.timing, extra...); err != nil {
			return err
		}
		say("   %s: API %s, consensus %s, log %s", n.id, n.url(), n.consAddr, filepath.Join(n.dir, "agent.log"))
	}
	if err := poll(ctx, 30*time.Second, "node1 becomes active", func() bool {
		st, err := nodes[0].status(ctx)
		return err == nil && st.Active
	}); err != nil {
		return err
	}
	for _, n := range nodes[1:] {
		if err := poll(ctx, 10*time.Second, n.id+" API up", func() bool { _, err := n.status(ctx); return err == nil }); err != nil {
			return err
		}
	}
	// node1 is active a moment before its ha-state.json is written.
	var hs *consensus.HAState
	if err := poll(ctx, 10*time.Second, "node1 writes ha-state.json", func() bool {
		hs, err = consensus.ReadHAState(nodes[0].dir)
		return err == nil && hs.Valid
	}); err != nil {
		return err
	}
	token := hs.Token
	say("== node1 created cluster %s; enrolling node2 and node3", hs.HaID)
	for _, n := range nodes[1:] {
		var st consensus.NodeStatus
		secret, err := readSecretFile(filepath.Join(n.dir, consensus.BootstrapSecretFile))
		if err != nil {
			return fmt.Errorf("enrolling %s: its bootstrap secret: %w", n.id, err)
		}
		if _, err := nodes[0].client(token).Do(ctx, "POST", route.HAMembers, api.EnrollRequest{URL: n.url(), Secret: secret}, &st); err != nil {
			return fmt.Errorf("enrolling %s: %w", n.id, err)
		}
		say("   %s joined as %s", st.ID, st.Role)
	}

	say("== writing demo/hello through node1")
	var wr struct {
		Rev uint64 `json:"rev"`
	}
	if _, err := nodes[0].client(token).Do(ctx, "PUT", route.Object("demo", "hello"), []byte(`{"msg":"hello from raftvip"}`), &wr); err != nil {
		return err
	}
	say("   acknowledged at revision %d", wr.Rev)
	for _, n := range nodes {
		var applied uint64
		if err := poll(ctx, 10*time.Second, n.id+" applies the write", func() bool {
			st, err := n.status(ctx)
			applied = st.AppliedIndex
			return err == nil && applied >= wr.Rev
		}); err != nil {
			return err
		}
		var raw []byte
		if _, err := n.client(token).Do(ctx, "GET", route.Object("demo", "hello")+"?stale", nil, &raw); err != nil {
			return err
		}
		say("   %s holds it (applied index %d): %s", n.id, applied, compactJSON(raw))
	}
	var cs consensus.ClusterStatus
	if _, err := nodes[0].client(token).Do(ctx, "GET", route.HAStatus, nil, &cs); err != nil {
		return err
	}
	printStatus(out, &cs)

	var active *demoNode
	for _, n := range nodes {
		if st, err := n.status(ctx); err == nil && st.Active {
			active = n
		}
	}
	if active == nil {
		return errors.New("no active node to kill")
	}
	say("== kill -9 %s (the active node, pid %d)", active.id, active.cmd.Process.Pid)
	killed := time.Now()
	active.kill()
	var next *demoNode
	if err := poll(ctx, 30*time.Second, "another node becomes active", func() bool {
		for _, n := range nodes {
			if n == active {
				continue
			}
			if st, err := n.status(ctx); err == nil && st.Active {
				next = n
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	took := time.Since(killed)
	var raw []byte
	if _, err := next.client(token).Do(ctx, "GET", route.Object("demo", "hello"), nil, &raw); err != nil {
		return err
	}
	say("   %s is active %v after the kill and serves demo/hello: %s", next.id, took.Round(time.Millisecond), compactJSON(raw))
	if _, err := next.client(token).Do(ctx, "PUT", route.Object("demo", "after"), []byte(`{"msg":"written after failover"}`), &wr); err != nil {
		return err
	}
	say("   a new write is acknowledged at revision %d", wr.Rev)

	say("== restarting %s; it rejoins as a passive node", active.id)
	if err := active.start(exe, o.timing); err != nil {
		return err
	}
	if err := poll(ctx, 30*time.Second, active.id+" catches up", func() bool {
		st, err := active.status(ctx)
		return err == nil && st.AppliedIndex >= wr.Rev
	}); err != nil {
		return err
	}
	if _, err := next.client(token).Do(ctx, "GET", route.HAStatus, nil, &cs); err != nil {
		return err
	}
	printStatus(out, &cs)
	say("== done: failover took %v", took.Round(time.Millisecond))
	return nil
}

func compactJSON(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 200 {
		return string(raw[:200]) + "…"
	}
	return string(raw)
}

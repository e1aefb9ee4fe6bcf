package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/internal/netlab"
)

// netnsPossible says whether the namespace demo can run here, and if not,
// what it lacks.
func netnsPossible() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "it needs root to build network namespaces"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "it needs the ip command (apt-get install -y iproute2)"
	}
	return true, ""
}

// demoT lets the test-network harness run in a program: a fatal error
// unwinds to runNetnsDemo, and cleanups run when the demo ends.
type demoT struct {
	out      io.Writer
	cleanups []func()
	failed   bool
}

type demoFatal struct{ msg string }

func (d *demoT) Helper() {}
func (d *demoT) Fatalf(format string, args ...any) {
	d.failed = true
	panic(demoFatal{fmt.Sprintf(format, args...)})
}
func (d *demoT) Logf(format string, args ...any) {}
func (d *demoT) Cleanup(f func())                { d.cleanups = append(d.cleanups, f) }
func (d *demoT) Failed() bool                    { return d.failed }

const demoVIP = "198.18.0.100"

// runNetnsDemo builds three nodes and a client in network namespaces on one
// bridge, shows the VIP on the active node, kills that node with kill -9,
// and reports how long a client probing every 10 ms saw the VIP dark.
func runNetnsDemo(ctx context.Context, out io.Writer, o *demoOptions) (err error) {
	exe, dir, say, done, err := demoSetup(out, o)
	if err != nil {
		return err
	}
	dt := &demoT{out: out}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(demoFatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
		for i := len(dt.cleanups) - 1; i >= 0; i-- {
			dt.cleanups[i]()
		}
		done(err)
	}()
	net := netlab.Build(dt)
	nodes := make([]*netlab.Host, 3)
	agents := make([]*netlab.Proc, 3)
	dirs := make([]string, 3)
	client := net.AddHost("client", 10)
	say("== a bridge, three nodes (198.18.0.1-3) and a client (198.18.0.10) in network namespaces; VIP %s", demoVIP)
	for i := range nodes {
		h := net.AddHost(fmt.Sprintf("node%d", i+1), i+1)
		nodes[i], dirs[i] = h, filepath.Join(dir, h.Name)
		args := []string{exe, "agent", "--data-dir", dirs[i], "--node-id", h.Name, "--consensus-addr", h.Addr4 + ":8093",
			"--api-addr", "0.0.0.0:8092", "--api-url", "https://" + h.Addr4 + ":8092", "--virt-interface", "eth0",
			"--vip", demoVIP + "/24", "--timing", o.timing}
		if i == 0 {
			args = append(args, "--bootstrap")
		}
		agents[i] = h.Start("agent", args...)
	}
	if err := poll(ctx, 30*time.Second, "node1 creates the cluster", func() bool {
		st, err := consensus.ReadHAState(dirs[0])
		return err == nil && st.Valid
	}); err != nil {
		return err
	}
	for i := 1; i < 3; i++ {
		var last string
		if err := poll(ctx, 30*time.Second, "enrolling "+nodes[i].Name, func() bool {
			out, err := client.Run(exe, "ha", "enroll", "-E", "https://198.18.0.1:8092", "--data-dir", dirs[0],
				"--secret-file", filepath.Join(dirs[i], consensus.BootstrapSecretFile), "https://"+nodes[i].Addr4+":8092")
			last = out
			return err == nil
		}); err != nil {
			return fmt.Errorf("%w: %s", err, last)
		}
		say("   %s joined", nodes[i].Name)
	}
	url := "https://" + demoVIP + ":8092" + route.HANode
	whoAnswers := func() string {
		out, err := client.Run(exe, "debug", "probe", "--url", url, "--data-dir", dirs[0], "--duration", "1ms")
		var r ProbeResult
		if err != nil || json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &r) != nil || r.Status != 200 {
			return ""
		}
		return r.Node
	}
	var active int
	if err := poll(ctx, 30*time.Second, "a node answers on the VIP", func() bool {
		name := whoAnswers()
		for i, h := range nodes {
			if h.Name == name {
				active = i
				return true
			}
		}
		return false
	}); err != nil {
		return err
	}
	a := nodes[active]
	say("== %s is active and holds the VIP; the others answer nothing for it:", a.Name)
	for _, h := range nodes {
		held := "-"
		if strings.Contains(h.MustRun("ip", "-4", "addr", "show", "dev", "lo"), demoVIP) {
			held = demoVIP + " on lo (ARP for it answered by raftvip on eth0)"
		}
		say("   %s  %s", h.Name, held)
	}
	probe := client.Start("probe", exe, "debug", "probe", "--url", url, "--data-dir", dirs[0], "--interval", "10ms", "--duration", "60s")
	if err := poll(ctx, 10*time.Second, "the probe starts", func() bool { return len(probe.Lines()) >= 20 }); err != nil {
		return err
	}
	say("== kill -9 %s (pid %d) while the client requests the VIP every 10 ms", a.Name, agents[active].Pid())
	killed := time.Now()
	agents[active].Kill()
	var next string
	var firstNew, lastOld int64
	if err := poll(ctx, 30*time.Second, "another node answers on the VIP", func() bool {
		run := 0
		firstNew, lastOld = 0, 0
		for _, l := range probe.Lines() {
			var r ProbeResult
			if json.Unmarshal([]byte(l), &r) != nil || r.Status != 200 {
				continue
			}
			if r.Node == a.Name {
				lastOld = r.T
				continue
			}
			if firstNew == 0 {
				firstNew, next = r.T, r.Node
			}
			if r.T > killed.UnixNano() {
				run++
			}
		}
		return run >= 10
	}); err != nil {
		return err
	}
	probe.Kill()
	dark := time.Duration(firstNew - lastOld).Round(time.Millisecond)
	say("   %s took over: the client's last answer from %s and its first from %s were %v apart", next, a.Name, next, dark)
	for _, h := range nodes {
		if h.Name == next && strings.Contains(h.MustRun("ip", "-4", "addr", "show", "dev", "lo"), demoVIP+"/32") {
			say("   %s now holds %s on lo", h.Name, demoVIP)
		}
	}
	say("== done: VIP dark for %v after kill -9 (timing profile %q)", dark, o.timing)
	return nil
}

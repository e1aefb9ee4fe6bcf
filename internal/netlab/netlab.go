package netlab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prefix starts the name of every namespace this harness makes, followed by
// the PID of the test process that made it, so that a later run can tell a
// crashed run's leftovers (PID gone) from a live run's (never touched).
const Prefix = "rvt"

// T is what the harness needs of a test: testing.TB has it, and so can a
// program (raftvip demo) that builds a network outside a test.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// Net is a test network: a bridge in a namespace of its own and hosts, each
// in its own namespace, attached to it by a veth pair, with addresses in
// 198.18.0.0/24 and 2001:db8::/64.
type Net struct {
	t      T
	run    string // Prefix + pid + a counter: unique per Net
	bridge string // the bridge's namespace
	mu     sync.Mutex
	hosts  []*Host
	procs  []*Proc
}

var counter struct {
	sync.Mutex
	n int
}

// Build makes the bridge and removes what crashed earlier runs left. The
// network is torn down by t's clean-up, also when it fails. The caller
// makes sure it runs as root with iproute2 (test/netns's New checks).
func Build(t T) *Net {
	t.Helper()
	pruneStale(t)
	counter.Lock()
	counter.n++
	id := counter.n
	counter.Unlock()
	n := &Net{t: t, run: fmt.Sprintf("%s%d-%d", Prefix, os.Getpid(), id)}
	n.bridge = n.run + "-br"
	t.Cleanup(n.teardown)
	n.must("ip", "netns", "add", n.bridge)
	n.must("ip", "-n", n.bridge, "link", "add", "rvbr0", "type", "bridge")
	n.must("ip", "-n", n.bridge, "link", "set", "rvbr0", "up")
	n.must("ip", "-n", n.bridge, "link", "set", "lo", "up")
	return n
}

// pruneStale deletes namespaces of this harness whose creating process is
// gone.
func pruneStale(t T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, Prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue // that run is alive
		}
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			t.Logf("removed namespace %s left by an earlier run", name)
		}
	}
}

func (n *Net) must(args ...string) string {
	n.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Host is one machine of the test network.
type Host struct {
	net   *Net
	Name  string
	NS    string
	Addr4 string // 198.18.0.X
	Addr6 string // 2001:db8::X
	port  string // the veth end on the bridge
}

// AddHost adds a host with addresses 198.18.0.idx/24 and 2001:db8::idx/64
// on its eth0. idx must be 1 to 250 and unique in this Net.
func (n *Net) AddHost(name string, idx int) *Host {
	n.t.Helper()
	h := &Host{net: n, Name: name, NS: fmt.Sprintf("%s-%s", n.run, name),
		Addr4: fmt.Sprintf("198.18.0.%d", idx), Addr6: fmt.Sprintf("2001:db8::%x", idx)}
	h.port = fmt.Sprintf("rvp%d", idx)
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	n.must("ip", "netns", "add", h.NS)
	// Create the pair inside the host's namespace, then move one end to
	// the bridge's: nothing touches the host's own namespace.
	n.must("ip", "-n", h.NS, "link", "add", "eth0", "type", "veth", "peer", "name", h.port)
	n.must("ip", "-n", h.NS, "link", "set", h.port, "netns", n.bridge)
	n.must("ip", "-n", n.bridge, "link", "set", h.port, "master", "rvbr0")
	n.must("ip", "-n", n.bridge, "link", "set", h.port, "up")
	n.must("ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	n.must("ip", "-n", h.NS, "addr", "add", h.Addr4+"/24", "dev", "eth0")
	n.must("ip", "-n", h.NS, "addr", "add", h.Addr6+"/64", "dev", "eth0", "nodad")
	n.must("ip", "-n", h.NS, "link", "set", "eth0", "up")
	n.must("ip", "-n", h.NS, "link", "set", "lo", "up")
	return h
}

// AddBareHost adds a host that is not on the bridge; connect it with Link.
func (n *Net) AddBareHost(name string) *Host {
	n.t.Helper()
	h := &Host{net: n, Name: name, NS: fmt.Sprintf("%s-%s", n.run, name)}
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	n.must("ip", "netns", "add", h.NS)
	n.must("ip", "-n", h.NS, "link", "set", "lo", "up")
	return h
}

// Link connects a and b by a veth pair named ifname on both sides, with the
// given addresses (CIDR) on each end.
func (n *Net) Link(a, b *Host, ifname string, addrsA, addrsB []string) {
	n.t.Helper()
	tmp := ifname + "p"
	n.must("ip", "-n", a.NS, "link", "add", ifname, "type", "veth", "peer", "name", tmp)
	n.must("ip", "-n", a.NS, "link", "set", tmp, "netns", b.NS)
	n.must("ip", "-n", b.NS, "link", "set", tmp, "name", ifname)
	for _, side := range []struct {
		h     *Host
		addrs []string
	}{{a, addrsA}, {b, addrsB}} {
		n.must("ip", "netns", "exec", side.h.NS, "sysctl", "-qw", "net.ipv6.conf."+ifname+".accept_dad=0")
		for _, ad := range side.addrs {
			args := []string{"-n", side.h.NS, "addr", "add", ad, "dev", ifname}
			if strings.Contains(ad, ":") {
				args = append(args, "nodad")
			}
			n.must(append([]string{"ip"}, args...)...)
		}
		n.must("ip", "-n", side.h.NS, "link", "set", ifname, "up")
	}
}

// Run runs a short command in the host's namespace and returns its output.
func (h *Host) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	return string(out), err
}

// MustRun is Run that fails the test on error.
func (h *Host) MustRun(args ...string) string {
	h.net.t.Helper()
	out, err := h.Run(args...)
	if err != nil {
		h.net.t.Fatalf("%s: %s: %v: %s", h.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// MAC returns the hardware address of the host's eth0.
func (h *Host) MAC() string {
	return strings.TrimSpace(h.net.must("ip", "netns", "exec", h.NS, "cat", "/sys/class/net/eth0/address"))
}

// LinkDown cuts the host's cable (the bridge side of its veth).
func (h *Host) LinkDown() { h.net.must("ip", "-n", h.net.bridge, "link", "set", h.port, "down") }

// LinkUp plugs it back.
func (h *Host) LinkUp() { h.net.must("ip", "-n", h.net.bridge, "link", "set", h.port, "up") }

// Block makes h unable to send to each of to (a one-way partition): its
// packets to their addresses are dropped by blackhole routes.
func (h *Host) Block(to ...*Host) {
	for _, o := range to {
		h.net.must("ip", "-n", h.NS, "route", "add", "blackhole", o.Addr4+"/32")
		h.net.must("ip", "-n", h.NS, "-6", "route", "add", "blackhole", o.Addr6+"/128")
	}
}

// Unblock undoes Block.
func (h *Host) Unblock(to ...*Host) {
	for _, o := range to {
		h.net.must("ip", "-n", h.NS, "route", "del", "blackhole", o.Addr4+"/32")
		h.net.must("ip", "-n", h.NS, "-6", "route", "del", "blackhole", o.Addr6+"/128")
	}
}

// Partition cuts a from b both ways.
func Partition(a []*Host, b []*Host) {
	for _, x := range a {
		x.Block(b...)
	}
	for _, y := range b {
		y.Block(a...)
	}
}

// Heal undoes Partition.
func Heal(a []*Host, b []*Host) {
	for _, x := range a {
		x.Unblock(b...)
	}
	for _, y := range b {
		y.Unblock(a...)
	}
}

// Proc is a long-running process in a host's namespace.
type Proc struct {
	Name  string
	cmd   *exec.Cmd
	done  chan struct{}
	mu    sync.Mutex
	lines []string
}

// Start runs a command in the host's namespace until it exits or the test
// ends. Its output is kept line by line (Lines) and shown when the test
// fails.
func (h *Host) Start(name string, args ...string) *Proc {
	h.net.t.Helper()
	p := &Proc{Name: h.Name + "/" + name, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		h.net.t.Fatalf("%v", err)
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		h.net.t.Fatalf("starting %s: %v", p.Name, err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		pr.Close()
	}()
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	h.net.mu.Lock()
	h.net.procs = append(h.net.procs, p)
	h.net.mu.Unlock()
	return p
}

// Pid is the process's PID (ip netns exec execs the command in place).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Lines returns the output so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Stop freezes the process (SIGSTOP).
func (p *Proc) Stop() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Cont resumes it (SIGCONT).
func (p *Proc) Cont() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// Term sends SIGTERM and waits up to d for the exit, then kills.
func (p *Proc) Term(d time.Duration) bool {
	if !p.Running() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		p.Kill()
		return false
	}
}

func (n *Net) teardown() {
	n.mu.Lock()
	procs, hosts := n.procs, n.hosts
	n.mu.Unlock()
	for _, p := range procs {
		p.Kill()
		if n.t.Failed() {
			var b bytes.Buffer
			for _, l := range p.Lines() {
				b.WriteString(l)
				b.WriteByte('\n')
			}
			if b.Len() > 0 {
				n.t.Logf("output of %s:\n%s", p.Name, tail(b.String(), 200))
			}
		}
	}
	for _, h := range hosts {
		_ = exec.Command("ip", "netns", "del", h.NS).Run()
	}
	_ = exec.Command("ip", "netns", "del", n.bridge).Run()
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

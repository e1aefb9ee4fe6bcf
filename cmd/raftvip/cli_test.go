package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftvip/raftvip/consensus"
)

// binary is the raftvip binary built once for these tests: they run it as a
// user would, as separate processes.
var binary string

func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") {
			// Fuzzing (the coordinator and each worker run TestMain): the
			// fuzz targets call parsers, not the binary.
			os.Exit(m.Run())
		}
	}
	dir, err := os.MkdirTemp("", "raftvip-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftvip")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building raftvip: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run runs the binary and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "RAFTVIP_DATA_DIR=/nonexistent", "RAFTVIP_ENDPOINT=", "RAFTVIP_API_TOKEN=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestBadInputFailsClearly(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--data-dir", t.TempDir(), "--timing", "slow"}, "--timing"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--bootstrap", "--join", "http://x", "--token-file", secretFile(t, "t")}, "exclude"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--join", "http://x"}, "--token-file"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--join", "http://x", "--token", "t"}, "/proc"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--join", "http://x", "--token-file", "/nonexistent/token"}, "--token-file"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--join", "http://x", "--token-file", secretFile(t, "a\nb")}, "one line"},
		{[]string{"ha", "status", "-E", "http://127.0.0.1:1", "--api-token", "secret"}, "/proc"},
		{[]string{"ha", "status", "-E", "http://127.0.0.1:1", "--api-token-file", secretFile(t, "")}, "one line"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--api-addr", "0.0.0.0:0"}, "--api-url"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--consensus-addr", "nohost"}, "--consensus-addr"},
		{[]string{"agent", "--no-such-flag"}, "unknown flag"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--max-file-size", "-5"}, "--max-file-size"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--config", badConfig(t, `{"timing":"fast"} trailing`)}, "--config"},
		{[]string{"agent", "--data-dir", t.TempDir(), "--config", badConfig(t, `{"timing":"fast","timing":"default"}`)}, "duplicate"},
		{[]string{"ha", "status", "-E", "http://127.0.0.1:1"}, "cannot reach raftvip"},
		{[]string{"ha", "status", "-E", "not a url"}, "--endpoint"},
		{[]string{"ha", "enroll", "-E", "http://127.0.0.1:1", "198.18.0.2"}, "API URL"},
		{[]string{"ha", "enroll", "-E", "http://127.0.0.1:1", "http://127.0.0.1:2"}, "bootstrap secret"},
		{[]string{"ha", "enroll", "-E", "http://127.0.0.1:1", "http://127.0.0.1:2", "--secret-file", "/nonexistent"}, "--secret-file"},
		{[]string{"ha", "failover-safe", "--wait", "9s", "-E", "http://127.0.0.1:1"}, "--wait"},
		{[]string{"objects", "put", "machine", "m1", "{not json", "-E", "http://127.0.0.1:1"}, "not valid JSON"},
		{[]string{"objects", "get", "machine"}, "accepts 2 arg"},
		{[]string{"no-such-command"}, "unknown command"},
	}
	for _, c := range cases {
		stdout, stderr, code := run(t, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("raftvip %s: exit %d, stderr %q, stdout %q; want a non-zero exit and %q", strings.Join(c.args, " "), code, stderr, stdout, c.want)
		}
	}
}

// secretFile writes a token file holding body and returns its path.
func secretFile(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// badConfig writes a config file with body and returns its path.
func badConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.json")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(args ...string) (agentOptions, error) {
		cmd := newAgentCmd()
		var o agentOptions
		cmd.RunE = func(c *cobra.Command, _ []string) error {
			if err := applyEnvAndConfig(c.Flags(), cfg); err != nil {
				return err
			}
			o = agentOptionsFrom(c)
			return nil
		}
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		return o, cmd.Execute()
	}
	write(`{"node-id":"from-file","api-addr":"198.18.0.1:1","timing":"fast","observer":true}`)
	t.Setenv("RAFTVIP_API_ADDR", "198.18.0.2:2")
	t.Setenv("RAFTVIP_NODE_ID", "from-env")
	o, err := parse("--node-id", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if o.nodeID != "from-flag" || o.apiAddr != "198.18.0.2:2" || o.timing != "fast" || !o.observer {
		t.Fatalf("want flag > env > file, got %+v", o)
	}
	write(`{"node-idd":"x"}`)
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "node-idd") {
		t.Fatalf("unknown config key: %v", err)
	}
	write(`{"observer":"maybe"}`)
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "observer") {
		t.Fatalf("bad config value: %v", err)
	}
	write(`[1,2]`)
	if _, err := parse(); err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Fatalf("config not an object: %v", err)
	}
}

// agentOptionsFrom reads the parsed flags back, for TestConfigPrecedence.
func agentOptionsFrom(cmd *cobra.Command) agentOptions {
	f := cmd.Flags()
	var o agentOptions
	o.nodeID, _ = f.GetString("node-id")
	o.apiAddr, _ = f.GetString("api-addr")
	o.timing, _ = f.GetString("timing")
	o.observer, _ = f.GetBool("observer")
	return o
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// agent is one raftvip agent process.
type agent struct {
	id, dir, api, cons string
	cmd                *exec.Cmd
	done               chan struct{}
	log                *bytes.Buffer
}

func startAgent(t *testing.T, a *agent, extra ...string) {
	t.Helper()
	args := append([]string{"agent", "--data-dir", a.dir, "--node-id", a.id, "--consensus-addr", a.cons, "--api-addr", a.api, "--timing", "default"}, extra...)
	a.cmd = exec.Command(binary, args...)
	a.log = &bytes.Buffer{}
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.done) }()
}

func (a *agent) kill() {
	select {
	case <-a.done:
	default:
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func (a *agent) term(t *testing.T) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop on SIGTERM", a.id)
		a.kill()
	}
}

// httpsClient is an HTTP client that trusts the cluster CA in a member's
// data dir (as the CLI does).
func httpsClient(t testing.TB, dir string, timeout time.Duration) *http.Client {
	t.Helper()
	trust, err := (&clientOptions{dataDir: dir}).trust("")
	if err != nil {
		t.Fatal(err)
	}
	if trust.Roots == nil {
		t.Fatalf("%s holds no cluster CA (tls/ca.crt)", dir)
	}
	tr := trust.Transport(nil)
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Timeout: timeout, Transport: tr}
}

// eventually runs the command until it exits 0 and its output contains want.
func eventually(t *testing.T, within time.Duration, want string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, errOut, code := run(t, args...)
		if code == 0 && strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("raftvip %s: exit %d, %q %q; want %q within %v", strings.Join(args, " "), code, out, errOut, want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCLICluster drives three agent processes with the CLI alone: init,
// enroll, write, read, status, kill -9 of the active node, remove, transfer,
// and a graceful stop that hands leadership over.
func TestCLICluster(t *testing.T) {
	agents := make([]*agent, 3)
	for i := range agents {
		agents[i] = &agent{id: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), api: freePort(t), cons: freePort(t)}
		startAgent(t, agents[i])
	}
	t.Cleanup(func() {
		for _, a := range agents {
			a.kill()
			if t.Failed() {
				t.Logf("%s log:\n%s", a.id, a.log)
			}
		}
	})
	ep := func(a *agent) []string { return []string{"-E", "https://" + a.api, "--data-dir", agents[0].dir} }
	with := func(a *agent, args ...string) []string { return append(args, ep(a)...) }

	eventually(t, 10*time.Second, "n1", with(agents[0], "ha", "id")...)
	// An unjoined node presents its bootstrap certificate, which only its
	// own secret names: with another node's data dir, or none, the CLI
	// refuses to talk to it.
	eventually(t, 10*time.Second, "n2", "ha", "id", "-E", "https://"+agents[1].api, "--data-dir", agents[1].dir)
	for _, dir := range []string{agents[0].dir, "/nonexistent"} {
		if _, errOut, code := run(t, "ha", "id", "-E", "https://"+agents[1].api, "--data-dir", dir); code == 0 || !strings.Contains(errOut, "certificate") {
			t.Fatalf("ha id of an unjoined node with data dir %s: exit %d, %q; want its certificate refused", dir, code, errOut)
		}
	}
	if out, errOut, code := run(t, with(agents[0], "ha", "init")...); code != 0 || !strings.Contains(out, "created") {
		t.Fatalf("ha init: %d %s %s", code, out, errOut)
	}
	for _, a := range agents[1:] {
		eventually(t, 10*time.Second, a.id, "ha", "id", "-E", "https://"+a.api, "--data-dir", a.dir)
		if out, errOut, code := run(t, with(agents[0], "ha", "enroll", "https://"+a.api, "--secret-file", filepath.Join(a.dir, consensus.BootstrapSecretFile))...); code != 0 || !strings.Contains(out, "enrolled "+a.id) {
			t.Fatalf("ha enroll %s: %d %s %s", a.id, code, out, errOut)
		}
	}
	// Every agent now has the cluster's token in its own ha-state.json.
	tokens := map[string]bool{}
	for _, a := range agents {
		st, err := consensus.ReadHAState(a.dir)
		if err != nil || !st.Valid || st.Token == "" {
			t.Fatalf("%s ha-state: %+v %v", a.id, st, err)
		}
		tokens[st.Token] = true
	}
	if len(tokens) != 1 {
		t.Fatalf("the nodes hold %d different API tokens", len(tokens))
	}

	// ha rotate-certs: every member's two certificates, renewed; the
	// cluster still answers over the new ones.
	if out, errOut, code := run(t, with(agents[1], "ha", "rotate-certs")...); code != 0 || strings.Count(out, "valid until") != 6 || strings.Contains(out, "NOT ROTATED") {
		t.Fatalf("ha rotate-certs: %d %s %s", code, out, errOut)
	}
	eventually(t, 10*time.Second, "n3", with(agents[2], "ha", "id")...)

	// A named read token: created by the admin (the cluster token), it reads
	// but cannot write; listed; revoked, it reads nothing.
	out, errOut, code := run(t, with(agents[0], "tokens", "create", "ro", "--role", "read")...)
	if code != 0 || !strings.HasPrefix(out, "rvt_") {
		t.Fatalf("tokens create: %d %s %s", code, out, errOut)
	}
	// No data dir: the cluster CA from --ca, the token from a file.
	ro := []string{"-E", "https://" + agents[1].api, "--data-dir", "/nonexistent", "--ca", filepath.Join(agents[0].dir, "tls", "ca.crt"), "--api-token-file", secretFile(t, strings.TrimSpace(out))}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// agents[1] knows the token once it has applied its creation.
		_, errOut, code := run(t, append([]string{"objects", "list", "machine"}, ro...)...)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read token reading on %s: %d %s", agents[1].id, code, errOut)
		}
	}
	if _, errOut, code := run(t, append([]string{"objects", "put", "machine", "ro", `{}`}, ro...)...); code == 0 || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("read token writing: %d %s", code, errOut)
	}
	if out, errOut, code := run(t, with(agents[0], "tokens", "list")...); code != 0 || !strings.Contains(out, "ro") || !strings.Contains(out, "read") {
		t.Fatalf("tokens list: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := run(t, with(agents[0], "tokens", "revoke", "ro")...); code != 0 || !strings.Contains(out, "revoked ro") {
		t.Fatalf("tokens revoke: %d %s %s", code, out, errOut)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, errOut, code := run(t, append([]string{"objects", "list", "machine"}, ro...)...)
		if code != 0 && strings.Contains(errOut, "unauthorized") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked token still works on %s: %d %s", agents[1].id, code, errOut)
		}
	}

	// Write through a passive node (forwarded), read from every node.
	if out, errOut, code := run(t, with(agents[2], "objects", "put", "machine", "m1", `{"name":"m1"}`)...); code != 0 || !strings.Contains(out, `"rev"`) {
		t.Fatalf("objects put: %d %s %s", code, out, errOut)
	}
	for _, a := range agents {
		eventually(t, 10*time.Second, `"name": "m1"`, with(a, "objects", "get", "machine", "m1", "--stale")...)
	}
	if _, errOut, code := run(t, with(agents[0], "objects", "put", "machine", "m1", `{"name":"x"}`, "--if-match", "1")...); code == 0 || !strings.Contains(errOut, "revision_mismatch") {
		t.Fatalf("CAS with a stale revision: exit %d %s", code, errOut)
	}
	if _, errOut, code := run(t, with(agents[0], "objects", "put", "machine", "m1", `{}`, "--create")...); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("create over an existing object: exit %d %s", code, errOut)
	}
	var cs consensus.ClusterStatus
	out = eventually(t, 10*time.Second, `"consistent": true`, with(agents[0], "ha", "status", "--json")...)
	if err := json.Unmarshal([]byte(out), &cs); err != nil || cs.Voters != 3 || cs.ActiveID == "" {
		t.Fatalf("status: %v %s", err, out)
	}
	table := eventually(t, 10*time.Second, "ROLE", with(agents[1], "ha", "status")...)
	if !strings.Contains(table, "active") || !strings.Contains(table, "passive") {
		t.Fatalf("status table:\n%s", table)
	}
	eventually(t, 10*time.Second, "true", with(agents[0], "ha", "failover-safe", "--wait", "2s")...)

	// kill -9 the active node; another becomes active and serves the data.
	var active *agent
	for _, a := range agents {
		if a.id == cs.ActiveID {
			active = a
		}
	}
	active.kill()
	var survivor *agent
	for _, a := range agents {
		if a != active {
			survivor = a
		}
	}
	newActive := strings.TrimSpace(eventually(t, 15*time.Second, "n", with(survivor, "ha", "active")...))
	if newActive == active.id {
		t.Fatalf("the killed node %s is still reported active", active.id)
	}
	eventually(t, 10*time.Second, `"name": "m1"`, with(survivor, "objects", "get", "machine", "m1")...)
	out = eventually(t, 10*time.Second, "unreachable", with(survivor, "ha", "status")...)
	if !strings.Contains(out, "WARNING") {
		t.Fatalf("status does not warn about the dead node:\n%s", out)
	}

	// The killed node restarts from its data and rejoins as passive.
	startAgent(t, active)
	eventually(t, 15*time.Second, "no warnings", with(survivor, "ha", "status")...)

	// Graceful switch-over to a chosen passive node, then a graceful stop
	// of that node hands leadership on.
	var pas *agent
	for _, a := range agents {
		if a.id != newActive {
			pas = a
			break
		}
	}
	if out, errOut, code := run(t, with(survivor, "ha", "transfer", pas.id)...); code != 0 || !strings.Contains(out, "to "+pas.id) {
		t.Fatalf("ha transfer: %d %s %s", code, out, errOut)
	}
	eventually(t, 10*time.Second, pas.id, with(pas, "ha", "active")...)
	pas.term(t)
	if !strings.Contains(pas.log.String(), "handed leadership over") {
		t.Fatalf("the stopped active node did not hand over:\n%s", pas.log)
	}
	var rest *agent
	for _, a := range agents {
		if a != pas {
			rest = a
		}
	}
	next := strings.TrimSpace(eventually(t, 10*time.Second, "n", with(rest, "ha", "active")...))
	if next == pas.id {
		t.Fatalf("the stopped node %s is still active", pas.id)
	}

	// Remove the stopped node; two voters are left, and warned about.
	if out, errOut, code := run(t, with(rest, "ha", "remove", pas.id)...); code != 0 {
		t.Fatalf("ha remove: %d %s %s", code, out, errOut)
	}
	out = eventually(t, 10*time.Second, "even number", with(rest, "ha", "status")...)
	if strings.Contains(out, pas.id+" ") {
		t.Fatalf("removed node still listed:\n%s", out)
	}
	// The member record goes in the entry after the removal: poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ms []map[string]any
		peers := eventually(t, 5*time.Second, "[", with(rest, "ha", "peers", "--json")...)
		if err := json.Unmarshal([]byte(peers), &ms); err == nil && len(ms) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers after remove: %s", peers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, 10*time.Second, `"name": "m1"`, with(rest, "objects", "get", "machine", "m1")...)
}

func TestDemoLoopback(t *testing.T) {
	out, errOut, code := run(t, "demo", "--loopback", "--timing", "default")
	if code != 0 || !strings.Contains(out, "done: failover took") {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestDemoNetns runs the README's demo as a user would, as root: in network
// namespaces, with the VIP.
func TestDemoNetns(t *testing.T) {
	if ok, why := netnsPossible(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the namespace demo cannot run: %s", why)
		}
		t.Skip(why)
	}
	before, _ := exec.Command("ip", "netns", "list").Output()
	out, errOut, code := run(t, "demo", "--timing", "default")
	if code != 0 || !strings.Contains(out, "VIP dark for") || !strings.Contains(out, "holds 198.18.0.100") {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
	after, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Count(string(after), "rvt") > strings.Count(string(before), "rvt") {
		t.Fatalf("the demo left namespaces behind:\n%s", after)
	}
}

// TestNotifyHooks: the notify script runs on becoming active and on a
// graceful stop (passive), with the node and term in its environment; a
// script that fails or hangs is logged and never holds the node up.
func TestNotifyHooks(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "transitions")
	script := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $RAFTVIP_STATE $RAFTVIP_NODE $RAFTVIP_TERM\" >> "+record+"\necho ran\n[ \"$1\" = active ] && exit 3\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := &agent{id: "h1", dir: filepath.Join(dir, "data"), api: freePort(t), cons: freePort(t)}
	startAgent(t, a, "--bootstrap", "--notify-script", script, "--notify-timeout", "5s")
	t.Cleanup(a.kill)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(record)
		if strings.HasPrefix(string(b), "active active h1 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 'active' transition recorded: %q\n%s", b, a.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The script exited 3 on 'active': reported, and the node is active all the same.
	eventually(t, 10*time.Second, "active", "ha", "status", "-E", "https://"+a.api, "--data-dir", a.dir)
	a.term(t)
	b, _ := os.ReadFile(record)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "passive passive h1 ") {
		t.Fatalf("transitions %q, want active then passive", lines)
	}
	if !strings.Contains(a.log.String(), "notify script failed") || !strings.Contains(a.log.String(), "output=ran") {
		t.Fatalf("the failing script was not reported with its output:\n%s", a.log)
	}
}

// TestCLIFilesAndJobs: upload, list, download (verified) and delete a file,
// and append to and read a job log, with the CLI against a running agent.
func TestCLIFilesAndJobs(t *testing.T) {
	a := &agent{id: "f1", dir: t.TempDir(), api: freePort(t), cons: freePort(t)}
	startAgent(t, a, "--bootstrap")
	t.Cleanup(a.kill)
	ep := []string{"-E", "https://" + a.api, "--data-dir", a.dir}
	eventually(t, 20*time.Second, "active", append([]string{"ha", "status"}, ep...)...)
	dir := t.TempDir()
	src := filepath.Join(dir, "boot.iso")
	data := bytes.Repeat([]byte("raftvip iso "), 300000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := run(t, append([]string{"isos", "upload", src, "ubuntu/boot.iso"}, ep...)...); code != 0 || !strings.Contains(out, "isos/ubuntu/boot.iso") {
		t.Fatalf("upload: %d %s %s", code, out, errOut)
	}
	if out, _, code := run(t, append([]string{"isos", "list", "--prefix", "ubuntu/"}, ep...)...); code != 0 || !strings.HasPrefix(out, "ubuntu/boot.iso\t3600000\t") {
		t.Fatalf("list: %d %q", code, out)
	}
	dst := filepath.Join(dir, "copy.iso")
	if _, errOut, code := run(t, append([]string{"isos", "download", "ubuntu/boot.iso", dst}, ep...)...); code != 0 {
		t.Fatalf("download: %d %s", code, errOut)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (%d bytes, %v)", len(got), err)
	}
	if _, errOut, code := run(t, append([]string{"isos", "upload", src, "../escape"}, ep...)...); code == 0 || !strings.Contains(errOut, "..") {
		t.Fatalf("an escaping path was accepted: %d %s", code, errOut)
	}
	if _, _, code := run(t, append([]string{"isos", "delete", "ubuntu/boot.iso"}, ep...)...); code != 0 {
		t.Fatal("delete failed")
	}
	if _, errOut, code := run(t, append([]string{"isos", "download", "ubuntu/boot.iso", dst}, ep...)...); code == 0 || !strings.Contains(errOut, "404") {
		t.Fatalf("a deleted file downloaded: %d %s", code, errOut)
	}
	for _, chunk := range []string{"first line\n", "second line\n"} {
		cmd := exec.Command(binary, append([]string{"jobs", "log", "append", "build-1"}, ep...)...)
		cmd.Stdin = strings.NewReader(chunk)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("append: %v %s", err, out)
		}
	}
	if out, errOut, code := run(t, append([]string{"jobs", "log", "tail", "build-1"}, ep...)...); code != 0 || out != "first line\nsecond line\n" {
		t.Fatalf("tail: %d %q %s", code, out, errOut)
	}
}

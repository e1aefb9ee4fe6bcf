package consensus

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/store"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newCluster makes a one-node cluster on loopback.
func newCluster(t *testing.T, id string) *Node {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := New(Config{DataDir: t.TempDir(), NodeID: id, ConsensusAddr: freeAddr(t), APIURL: "http://127.0.0.1:1", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Init(ctx, InitOptions{}); err != nil {
		t.Fatalf("init %s: %v", id, err)
	}
	return n
}

// TestOtherClusterRefused: a node holding a certificate from another
// cluster's CA, or none, can neither call member endpoints nor speak Raft.
func TestOtherClusterRefused(t *testing.T) {
	a := newCluster(t, "a")
	b := newCluster(t, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// a's own client reaches a.
	var st NodeStatus
	if err := a.getInternal(ctx, a.cfg.ConsensusAddr, "/internal/status", &st); err != nil || st.ID != "a" {
		t.Fatalf("a cannot reach itself: %v %+v", err, st)
	}
	// b's member certificate is not trusted by a, and a's server
	// certificate is not trusted by b.
	err := b.getInternal(ctx, a.cfg.ConsensusAddr, "/internal/status", &st)
	if err == nil {
		t.Fatal("a member of another cluster reached /internal/status")
	}

	// A client that trusts a's CA (so the server side verifies) but
	// presents b's certificate is refused by a during the handshake.
	mixed := a.mat.clientTLS(slotOf(b.mat))
	for _, kind := range []byte{streamRaft, streamRPC} {
		if err := roundTrip(a.cfg.ConsensusAddr, mixed, kind); err == nil {
			t.Fatalf("stream %c: a certificate from another CA was accepted", kind)
		}
	}
	// Without any certificate, Raft and member HTTP are refused; only the
	// join stream answers.
	anon := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: a.mat.pool, ServerName: memberServerName}
	for _, kind := range []byte{streamRaft, streamRPC} {
		if err := roundTrip(a.cfg.ConsensusAddr, anon, kind); err == nil {
			t.Fatalf("stream %c: a client without a certificate was served", kind)
		}
	}
	if err := roundTrip(a.cfg.ConsensusAddr, anon, streamJoin); err != nil {
		t.Fatalf("join stream refused a client without a certificate: %v", err)
	}
}

// roundTrip opens a stream and sends an HTTP request on it; it fails unless
// an HTTP answer comes back.
func roundTrip(addr string, conf *tls.Config, kind byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := dialStream(ctx, addr, conf, kind)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET /internal/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf), "HTTP/1.1") {
		return errors.New("no HTTP answer")
	}
	return nil
}

func TestJoinTokens(t *testing.T) {
	a := newCluster(t, "a")
	b := newCluster(t, "b")
	haA := a.HAState().HaID
	tok, err := a.Token(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.mat.checkToken(tok, haA); err != nil {
		t.Fatalf("a's own token refused: %v", err)
	}
	c, err := ParseToken(tok)
	if err != nil || c.ClusterID != haA || c.CAHash != a.mat.CAFingerprint() {
		t.Fatalf("claims %+v, %v", c, err)
	}
	tokB, _ := b.Token(time.Minute)
	expired, _ := a.mat.newToken(haA, -time.Second)
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	for name, bad := range map[string]string{"other cluster": tokB, "expired": expired, "tampered": tampered, "garbage": "hello", "empty": ""} {
		if err := a.mat.checkToken(bad, haA); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s token: %v, want ErrBadToken", name, err)
		}
	}
	if _, err := a.Token(0); err == nil {
		t.Error("a zero lifetime was accepted")
	}
	if _, err := a.Token(8 * 24 * time.Hour); err == nil {
		t.Error("a lifetime over a week was accepted")
	}
}

func TestTimingValidate(t *testing.T) {
	for name, p := range Profiles {
		if err := p.Validate(); err != nil {
			t.Errorf("profile %s: %v", name, err)
		}
	}
	d := DefaultTiming()
	bad := map[string]Timing{
		"lease as long as heartbeat": {Heartbeat: d.Heartbeat, Election: d.Election, LeaderLease: d.LeaderLease, ActiveLease: d.Heartbeat, CommitTimeout: d.CommitTimeout},
		"lease inside the margin":    {Heartbeat: d.Heartbeat, Election: d.Election, LeaderLease: d.LeaderLease, ActiveLease: d.Heartbeat - d.leaseMargin(), CommitTimeout: d.CommitTimeout},
		"election below heartbeat":   {Heartbeat: d.Heartbeat, Election: d.Heartbeat / 2, LeaderLease: d.LeaderLease, ActiveLease: d.ActiveLease, CommitTimeout: d.CommitTimeout},
		"tiny heartbeat":             {Heartbeat: 10 * time.Millisecond, Election: time.Second, LeaderLease: 5 * time.Millisecond, ActiveLease: 5 * time.Millisecond, CommitTimeout: time.Millisecond},
		"no commit timeout":          {Heartbeat: d.Heartbeat, Election: d.Election, LeaderLease: d.LeaderLease, ActiveLease: d.ActiveLease},
	}
	for name, tm := range bad {
		if err := tm.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{DataDir: "/x", ConsensusAddr: "198.18.0.1:8093", APIURL: "http://198.18.0.1:8092", Timing: DefaultTiming()}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for flag, mutate := range map[string]func(*Config){
		"--data-dir":       func(c *Config) { c.DataDir = "" },
		"--consensus-addr": func(c *Config) { c.ConsensusAddr = "0.0.0.0:8093" },
		"--api-url":        func(c *Config) { c.APIURL = "ftp://x" },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("bad %s: %v", flag, err)
		}
	}
	c := good
	c.ConsensusAddr = "198.18.0.1"
	if err := c.Validate(); err == nil {
		t.Error("a consensus address without a port was accepted")
	}
}

func TestHAStateWinsOverFlags(t *testing.T) {
	dir := t.TempDir()
	if st, err := ReadHAState(dir); err != nil || st.Valid {
		t.Fatalf("missing file: %+v %v", st, err)
	}
	want := &HAState{ConsensusID: "n1", HaID: "c1", ConsensusAddr: "198.18.0.1:8093", ApiUrl: "http://198.18.0.1:8092", VirtInterface: "eth0", Token: "t", Valid: true}
	if err := WriteHAState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHAState(dir)
	if err != nil || *got != *want {
		t.Fatalf("read back %+v, %v", got, err)
	}
	cfg := Config{NodeID: "other", ConsensusAddr: "198.18.0.9:8093"}
	conflicts := got.overrides(&cfg)
	if cfg.NodeID != "n1" || cfg.ConsensusAddr != "198.18.0.1:8093" || cfg.APIURL != want.ApiUrl || cfg.VirtInterface != "eth0" {
		t.Fatalf("ha-state did not win: %+v", cfg)
	}
	if len(conflicts) != 2 {
		t.Fatalf("want two reported conflicts (node-id, consensus-addr), got %q", conflicts)
	}
}

// TestSubscribePublishesActive: the single node of a new cluster becomes
// active and its subscribers hear of it; Close ends the subscription.
func TestSubscribePublishesActive(t *testing.T) {
	a := newCluster(t, "a")
	ch, cancel := a.Subscribe()
	defer cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case act := <-ch:
			if act.Active && act.LeaderID == "a" && act.Term > 0 {
				goto closed
			}
		case <-deadline:
			t.Fatal("no Active{Active: true} published")
		}
	}
closed:
	a.Close()
	for {
		select {
		case act, ok := <-ch:
			if !ok {
				return
			}
			if act.Active {
				t.Fatal("a closed node published Active")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the subscription was not closed with the node")
		}
	}
}

func TestSharedStorageRefused(t *testing.T) {
	for link, want := range map[string]string{
		"../../devices/platform/host3/session1/target3:0:0/3:0:0:0/block/sdb/sdb1":            "iSCSI",
		"../../devices/virtual/block/drbd0":                                                   "DRBD",
		"../../devices/virtual/block/nbd2":                                                    "NBD (network block device)",
		"../../devices/virtual/block/rbd0":                                                    "Ceph RBD",
		"../../devices/pci0000:00/0000:00:05.0/virtio2/block/vda":                             "",
		"../../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2": "",
	} {
		if got := sharedBlock(link); got != want {
			t.Errorf("%s: %q, want %q", link, got, want)
		}
	}
	if name := sharedFS[0x6969]; name != "NFS" {
		t.Errorf("NFS magic maps to %q", name)
	}
	// This machine's temporary directory is local and accepted.
	if err := checkLocalStorage(t.TempDir()); err != nil {
		t.Fatalf("a local directory was refused: %v", err)
	}
}

// TestTranslateOutcome: only errors raised before an entry reached the log
// say "not the leader"; losing leadership with the entry in the log leaves
// the outcome unknown.
func TestTranslateOutcome(t *testing.T) {
	for _, tc := range []struct {
		raft error
		want error
	}{
		{raft.ErrLeadershipLost, ErrUnknownOutcome},
		{raft.ErrNotLeader, ErrNotLeader},
		{raft.ErrLeadershipTransferInProgress, ErrNotLeader},
		{raft.ErrEnqueueTimeout, ErrTimeout},
	} {
		got := translate(tc.raft)
		if !errors.Is(got, tc.want) {
			t.Errorf("translate(%v) = %v, want %v", tc.raft, got, tc.want)
		}
		if tc.want != ErrUnknownOutcome && errors.Is(got, ErrUnknownOutcome) {
			t.Errorf("translate(%v) = %v: a refusal reported as unknown", tc.raft, got)
		}
	}
}

// fakeLease records what a node puts into its kernel lease.
type fakeLease struct {
	mu    sync.Mutex
	holds []time.Time
	at    []time.Time // when each Hold came
}

func (f *fakeLease) Hold(until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holds = append(f.holds, until)
	f.at = append(f.at, time.Now())
	return nil
}

func (f *fakeLease) last() (time.Time, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.holds) == 0 {
		return time.Time{}, 0
	}
	return f.holds[len(f.holds)-1], len(f.holds)
}

// TestKernelLeaseFollowsLease: the kernel copy of the lease is renewed
// while the node is active, never beyond the node's own lease, and
// withdrawn when the node closes.
func TestKernelLeaseFollowsLease(t *testing.T) {
	a := newCluster(t, "a")
	f := &fakeLease{}
	a.SetKernelLease(f)
	deadline := time.Now().Add(10 * time.Second)
	for {
		until, n := f.last()
		if n >= 5 && !until.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d renewals in 10 s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	for i, u := range f.holds {
		if left := u.Sub(f.at[i]); left > a.Timing().ActiveLease {
			t.Errorf("the kernel was given %v, more than the active lease %v", left, a.Timing().ActiveLease)
		}
	}
	f.mu.Unlock()
	if st := a.Status().Fence; st == nil || !st.Held || st.LeftMs <= 0 {
		t.Fatalf("status fence %+v", st)
	}
	a.Close()
	if until, _ := f.last(); !until.IsZero() {
		t.Fatalf("the kernel still holds a lease until %v after Close", until)
	}
}

// TestHalfRemovedMemberCleaned: a member record whose server is no longer
// in the Raft configuration (a removal that lost its second step to a
// leadership change) is finished by a second remove, and by a new leader.
func TestHalfRemovedMemberCleaned(t *testing.T) {
	a := newCluster(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !a.IsActive() {
		if ctx.Err() != nil {
			t.Fatal("not active within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ghost := func() {
		t.Helper()
		if _, err := a.Apply(ctx, &store.Command{Op: store.OpMemberPut, Member: &store.Member{ID: "ghost", ConsensusAddr: "198.18.0.9:8093"}}); err != nil {
			t.Fatal(err)
		}
	}
	has := func() bool { _, ok := a.memberMap()["ghost"]; return ok }
	ghost()
	if err := a.Remove(ctx, "ghost"); err != nil {
		t.Fatalf("remove of a half-removed member: %v", err)
	}
	if has() {
		t.Fatal("the record is still there after the second remove")
	}
	if err := a.Remove(ctx, "ghost"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("remove of an unknown member: %v, want ErrUnknownMember", err)
	}
	ghost()
	a.reconcileMembers(ctx, a.r())
	if has() {
		t.Fatal("the record is still there after a leader reconciled")
	}
	if _, ok := a.memberMap()["a"]; !ok {
		t.Fatal("reconciling removed the leader's own record")
	}
}

// TestDataDirGuarded: a data directory that other users can enter is
// refused, and while one node holds a data directory a second is told so
// (with the holder's PID); once the first closes, the directory opens.
func TestDataDirGuarded(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	open := func(dir string) (*Node, error) {
		return New(Config{DataDir: dir, NodeID: "n1", ConsensusAddr: freeAddr(t), APIURL: "http://127.0.0.1:1", Logger: logger})
	}
	for _, mode := range []os.FileMode{0o750, 0o705, 0o777} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "ha-state.json"), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if n, err := open(dir); !errors.Is(err, ErrDataDirMode) || !strings.Contains(err.Error(), "chmod 700") {
			if n != nil {
				n.Close()
			}
			t.Fatalf("mode %#o: %v, want ErrDataDirMode naming chmod 700", mode, err)
		}
	}
	// An empty directory open to others holds nothing yet: made private.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the empty data dir was not made 0700: %v %v", fi.Mode(), err)
	}
	second, err := open(dir)
	if !errors.Is(err, ErrDataDirHeld) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second node on a held data dir: %v, want ErrDataDirHeld naming pid %d", err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := open(dir)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	third.Close()
}

// TestInconsistentDataDirRefused: a data dir whose ha-state.json, CA and
// node certificate do not describe one node of one cluster is refused at
// start, naming the file that disagrees; put back, it starts.
func TestInconsistentDataDirRefused(t *testing.T) {
	a, b := newCluster(t, "a1"), newCluster(t, "b1")
	dirA, dirB := a.cfg.DataDir, b.cfg.DataDir
	a.Close()
	b.Close()
	read := func(p string) []byte {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	write := func(p string, data []byte) {
		t.Helper()
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stateA, caA := read(filepath.Join(dirA, HAStateFile)), read(filepath.Join(dirA, "tls", "ca.crt"))
	var st HAState
	if err := json.Unmarshal(stateA, &st); err != nil {
		t.Fatal(err)
	}
	edited := st
	edited.ConsensusID = "someone-else"
	editedJSON, _ := json.Marshal(edited)
	otherCluster := st
	otherCluster.HaID = "another-cluster"
	otherJSON, _ := json.Marshal(otherCluster)
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := func() (*Node, error) {
		return New(Config{DataDir: dirA, NodeID: "a1", ConsensusAddr: st.ConsensusAddr, APIURL: "http://127.0.0.1:1", Logger: logger})
	}
	for _, c := range []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"another cluster's ha-state.json", HAStateFile, read(filepath.Join(dirB, HAStateFile)), "ca.crt"},
		{"an edited HaID", HAStateFile, otherJSON, "ca.crt"},
		{"an edited ConsensusID", HAStateFile, editedJSON, "node.crt"},
		{"another cluster's CA", filepath.Join("tls", "ca.crt"), read(filepath.Join(dirB, "tls", "ca.crt")), "ca.crt"},
		{"another cluster's CA key", filepath.Join("tls", "ca.key"), read(filepath.Join(dirB, "tls", "ca.key")), "ca.key"},
		{"another cluster's node certificate", filepath.Join("tls", "node.crt"), read(filepath.Join(dirB, "tls", "node.crt")), "node.crt"},
	} {
		orig := read(filepath.Join(dirA, c.file))
		write(filepath.Join(dirA, c.file), c.data)
		n, err := start()
		if n != nil {
			n.Close()
		}
		if !errors.Is(err, ErrInconsistent) && !errors.Is(err, ErrBadTLS) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a refusal naming %s", c.name, err, c.want)
		}
		write(filepath.Join(dirA, c.file), orig)
	}
	if !bytes.Equal(read(filepath.Join(dirA, "tls", "ca.crt")), caA) {
		t.Fatal("the CA was not put back")
	}
	n, err := start()
	if err != nil {
		t.Fatalf("the node's own files: %v", err)
	}
	n.Close()
}

// TestJoinStreamStrict: the join stream (open to nodes without a
// certificate) answers a body that is not I-JSON with 400.
func TestJoinStreamStrict(t *testing.T) {
	a := newCluster(t, "a")
	anon := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: a.mat.pool, ServerName: memberServerName}
	post := func(body string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := dialStream(ctx, a.cfg.ConsensusAddr, anon, streamJoin)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "POST /join HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, body := range []string{`{"token":"a","token":"b"}`, `{"node_id":"x"} trailing`, strings.Repeat("[", 100) + strings.Repeat("]", 100), "{\"node_id\":\"\xff\"}"} {
		if got := post(body); !strings.HasPrefix(got, "HTTP/1.1 400") || !strings.Contains(got, "bad_request") {
			t.Errorf("join body %.40q: %.80q, want 400 bad_request", body, got)
		}
	}
}

// TestJoinHandsOutNoKeys: the join stream answers a good token with a
// certificate and nothing else (no CA key, no API token); that certificate
// alone, for a node that never became a member, gets no secrets from
// /internal/secrets; and a token is good for one join.
func TestJoinHandsOutNoKeys(t *testing.T) {
	a := newCluster(t, "a")
	tok, err := a.Token(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anon := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: a.mat.pool, ServerName: memberServerName}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	join := func(id string) (int, map[string]any) {
		t.Helper()
		body, _ := json.Marshal(joinRequest{Token: tok, NodeID: id, ConsensusAddr: freeAddr(t), APIURL: "http://127.0.0.1:1", PublicKey: pub})
		resp, err := newStreamClient(anon, streamJoin).Post("https://"+a.cfg.ConsensusAddr+"/join", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	st, out := join("intruder")
	if st != 200 {
		t.Fatalf("join with a good token: %d %v", st, out)
	}
	for k := range out {
		if k != "cluster_id" && k != "node_cert" {
			t.Errorf("the join answer carries %q", k)
		}
	}
	cert, _ := out["node_cert"].(string)
	m := &Material{CACertPEM: a.mat.CACertPEM, NodeCertPEM: []byte(cert), NodeKeyPEM: marshalKey(priv)}
	if err := m.parse(); err != nil {
		t.Fatal(err)
	}
	resp, err := newStreamClient(m.clientTLS(slotOf(m)), streamRPC).Get("https://" + a.cfg.ConsensusAddr + "/internal/secrets")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("/internal/secrets for a certificate outside the configuration: %d, want 403", resp.StatusCode)
	}
	// The member itself gets them.
	var sec secretsResponse
	if err := a.getInternal(context.Background(), a.cfg.ConsensusAddr, "/internal/secrets", &sec); err != nil || sec.CAKey == "" || sec.APIToken == "" {
		t.Fatalf("a member's own /internal/secrets: %v", err)
	}
	if st, out := join("second"); st != http.StatusForbidden || out["code"] != "bad_token" {
		t.Fatalf("the same token again: %d %v, want 403 bad_token", st, out)
	}
}

// TestMemberChannelOnlyForConfiguredMembers: a certificate that the
// cluster's CA signed for a node outside the Raft configuration (a join
// that never became a membership, or a removed node) reads nothing on the
// member channel, the forwarded API (ha-state with its token) included;
// add-voter stays open to it.
func TestMemberChannelOnlyForConfiguredMembers(t *testing.T) {
	a := newCluster(t, "a")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.mat.issue("outsider", pub)
	if err != nil {
		t.Fatal(err)
	}
	m := &Material{CACertPEM: a.mat.CACertPEM, NodeCertPEM: cert, NodeKeyPEM: marshalKey(priv)}
	if err := m.parse(); err != nil {
		t.Fatal(err)
	}
	c := newStreamClient(m.clientTLS(slotOf(m)), streamRPC)
	for _, p := range []string{"/internal/status", "/internal/secrets", route.HAState, route.Kind("machine")} {
		resp, err := c.Get("https://" + a.cfg.ConsensusAddr + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "not_a_member") {
			t.Errorf("GET %s as an outsider: %d %s, want 403 not_a_member", p, resp.StatusCode, b)
		}
	}
	resp, err := c.Post("https://"+a.cfg.ConsensusAddr+"/internal/add-voter", "application/json", strings.NewReader(`{"id":"someone-else"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "certificate is for outsider") {
		t.Fatalf("add-voter for another name: %d %s, want the handler's own refusal", resp.StatusCode, b)
	}
	// The member itself is served.
	var st NodeStatus
	if err := a.getInternal(context.Background(), a.cfg.ConsensusAddr, "/internal/status", &st); err != nil {
		t.Fatalf("the member: %v", err)
	}
}

// slotOf holds m's node certificate, for a client made from m alone.
func slotOf(m *Material) *certSlot {
	var s certSlot
	s.set(m.nodeTLS)
	return &s
}

// TestCertsRenewedBeforeExpiry: a member whose certificates have less than
// a third of their lifetime left renews them by itself (new serials, new
// keys), saves them so that a restart keeps them, and stays reachable over
// its consensus port with the new certificate.
func TestCertsRenewedBeforeExpiry(t *testing.T) {
	oldNode, oldAPI, oldEvery := nodeLifetime, apiLifetime, certCheckEvery
	t.Cleanup(func() { nodeLifetime, apiLifetime, certCheckEvery = oldNode, oldAPI, oldEvery })
	// Issued an hour back-dated with a minute to go: due at once.
	nodeLifetime, apiLifetime, certCheckEvery = time.Minute, time.Minute, 20*time.Millisecond
	n := newCluster(t, "r1")
	first := n.Certificates()
	if first[0].Serial == "" || first[1].Serial == "" {
		t.Fatalf("certificates after init: %+v", first)
	}
	// The loop renews them; renewed ones are short-lived too, so it goes
	// on: wait for two rounds.
	deadline := time.Now().Add(10 * time.Second)
	for seen := 0; seen < 2; {
		now := n.Certificates()
		if now[0].Serial != first[0].Serial && now[1].Serial != first[1].Serial {
			seen++
			first = now
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificates not renewed: %+v", now)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st NodeStatus
	if err := n.getInternal(ctx, n.cfg.ConsensusAddr, "/internal/status", &st); err != nil {
		t.Fatalf("the consensus port after renewal: %v", err)
	}
	// What is on disk agrees with ha-state.json (a restart keeps it).
	n.certMu.Lock()
	mat, err := loadMaterial(filepath.Join(n.cfg.DataDir, "tls"))
	n.certMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	hs := n.HAState()
	if err := mat.agrees(&hs, filepath.Join(n.cfg.DataDir, "tls")); err != nil {
		t.Fatal(err)
	}
}

// TestNeedsRenewal: a certificate is renewed once less than a third of its
// lifetime is left, and not before.
func TestNeedsRenewal(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		from, to time.Duration // NotBefore and NotAfter from now
		due      bool
	}{
		{-time.Hour, 365 * 24 * time.Hour, false},
		{-200 * 24 * time.Hour, 165 * 24 * time.Hour, false},
		{-250 * 24 * time.Hour, 115 * 24 * time.Hour, true},
		{-time.Hour, -time.Minute, true},
	} {
		cert := &x509.Certificate{NotBefore: now.Add(c.from), NotAfter: now.Add(c.to)}
		if got := needsRenewal(cert, now); got != c.due {
			t.Errorf("valid from %v to %v: due %v, want %v", c.from, c.to, got, c.due)
		}
	}
	if !needsRenewal(nil, now) {
		t.Error("no certificate is not due")
	}
}

// TestJoinThroughImpostorAPIRefused: a joining node checks that the API it
// joins through presents a certificate of the cluster's CA. An impostor
// that serves the real cluster's (public) join info under a certificate of
// its own is refused before the node asks the cluster for anything.
func TestJoinThroughImpostorAPIRefused(t *testing.T) {
	a := newCluster(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := a.JoinInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	impostor := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, info)
	}))
	defer impostor.Close()
	tok, err := a.Token(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := New(Config{DataDir: t.TempDir(), NodeID: "b", ConsensusAddr: freeAddr(t), APIURL: "https://127.0.0.1:1", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Join(ctx, impostor.URL, tok)
	if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "did not sign") {
		t.Fatalf("join through an impostor's API: %v, want ErrBadToken naming the certificate", err)
	}
	if b.HAState().Valid {
		t.Fatal("the join went on past the impostor's certificate")
	}
	if ms, err := a.Members(); err != nil || len(ms) != 1 {
		t.Fatalf("a's members after the refused join: %v %v", ms, err)
	}
}

// TestCloseLeavesNoGoroutines: every goroutine a node starts (Raft, the
// consensus port's servers, the lease, readiness, blob sync and certificate
// renewal loops) has ended when Close returns, for a node that never joined
// and for a cluster member.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	settle := func() int {
		// Goroutines of earlier tests' HTTP clients may still be ending.
		n := runtime.NumGoroutine()
		for i := 0; i < 100; i++ {
			time.Sleep(20 * time.Millisecond)
			m := runtime.NumGoroutine()
			if m == n {
				return m
			}
			n = m
		}
		return n
	}
	base := settle()
	logger := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := New(Config{DataDir: t.TempDir(), NodeID: "g1", ConsensusAddr: freeAddr(t), APIURL: "https://127.0.0.1:1", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	m := newCluster(t, "g2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st NodeStatus
	if err := m.getInternal(ctx, m.cfg.ConsensusAddr, "/internal/status", &st); err != nil {
		t.Fatal(err)
	}
	m.RPCClient() // its idle connections belong to the node too
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package consensus

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/raftvip/raftvip/store"
)

// Node is one raftvip cluster member: Raft, its stores, the TLS identity, the
// consensus port and the active lease. A Node may exist before it belongs to
// a cluster (it then waits for Init or Join).
type Node struct {
	cfg    Config
	logger *slog.Logger
	// st is the state machine; backupOldData replaces it (during Init or
	// Join) while the API may be reading it, hence the atomic pointer.
	st atomic.Pointer[store.Store]

	mu    sync.Mutex // guards the fields below, which change on Init/Join/Close
	state *HAState
	mat   *Material
	raft  *raft.Raft
	trans *raft.NetworkTransport
	lock  *os.File // the data directory's lock, released by Close
	// The Raft configuration's server IDs, as membersOnly last read them.
	cfgMu   sync.Mutex
	cfgIDs  map[string]bool
	cfgRead time.Time
	// bootstrapSecret claims an unconfigured node ("" once it belongs to a
	// cluster); guarded by mu.
	bootstrapSecret string
	logStore        *raftboltdb.BoltStore
	mux             *mux
	servers         []*http.Server
	rpcHandler      http.Handler
	client          *http.Client
	bclient         *http.Client // member traffic without an overall timeout, for blobs and forwarded uploads
	statusExtra     func() any
	readiness       ReadinessFunc
	readinessSet    bool
	lastHandOver    HandOver
	closed          bool

	// The certificates in use: the member certificate (consensus port),
	// the API's (once in a cluster) and the bootstrap one (before);
	// certMu serialises their renewal.
	nodeCert, apiCert, bootCert certSlot
	certMu                      sync.Mutex

	leaseMu      sync.Mutex
	leaseUntil   time.Time
	readyTerm    uint64 // term whose barrier has completed on this leader
	transferring bool
	drainUntil   time.Time // end of the lease a deliberate hand-over keeps serving (see Active.Drain)

	fenceMu sync.Mutex
	fence   *kernelLease

	subMu sync.Mutex
	subs  map[chan Active]struct{}
	last  Active
	heals atomic.Uint64

	rateMu    sync.Mutex
	blobRates map[string]float64 // member address -> bytes/s of its last upload stream

	stop chan struct{}
	wg   sync.WaitGroup
	// life ends when Close begins: the context of work that outlives the
	// request that started it (blob copies), run with spawn.
	life    context.Context
	endLife context.CancelFunc
}

// spawn runs f in a goroutine that Close waits for, unless the node is
// closing (then it returns false and f does not run).
func (n *Node) spawn(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// Store returns the node's state machine, for reads.
func (n *Node) Store() *store.Store { return n.st.Load() }

// ID returns this node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Timing returns the node's timers.
func (n *Node) Timing() Timing { return n.cfg.Timing }

// New opens a node's data directory. If ha-state.json is valid the node
// starts at once and rejoins its cluster; its fields win over cfg, and each
// conflicting setting is logged. Otherwise the node waits for Init or Join.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	if err := checkLocalStorage(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := checkDataDirMode(cfg.DataDir, cfg.Logger); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n, err := open(cfg, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return n, nil
}

// open is New once the data directory is locked.
func open(cfg Config, lock *os.File) (*Node, error) {
	st, err := ReadHAState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: cfg.Logger, state: st, subs: map[chan Active]struct{}{}, stop: make(chan struct{}), lock: lock}
	n.life, n.endLife = context.WithCancel(context.Background())
	if !st.Valid {
		id := cfg.NodeID
		if id == "" {
			id = "(unnamed)"
		}
		sec, cert, err := ensureBootstrapIdentity(cfg.DataDir, id)
		if err != nil {
			return nil, fmt.Errorf("bootstrap secret: %w", err)
		}
		n.bootstrapSecret = sec
		n.bootCert.set(cert)
	}
	if st.Valid {
		for _, c := range st.overrides(&n.cfg) {
			n.logger.Warn("ha-state.json wins over a conflicting flag", "setting", c)
		}
	}
	if n.cfg.NodeID == "" {
		n.cfg.NodeID = newID()
	}
	s, err := store.Open(filepath.Join(cfg.DataDir, "store"), n.logger)
	if err != nil {
		return nil, err
	}
	n.st.Store(s)
	if st.Valid {
		if n.mat, err = loadMaterial(filepath.Join(cfg.DataDir, "tls")); err != nil {
			n.Store().Close()
			return nil, err
		}
		if err := n.mat.agrees(st, filepath.Join(cfg.DataDir, "tls")); err != nil {
			n.Store().Close()
			return nil, err
		}
		if err := n.start(nil); err != nil {
			n.Store().Close()
			return nil, err
		}
	}
	return n, nil
}

// overrides copies the valid state's fields into cfg and returns a line for
// each flag that disagreed.
func (s *HAState) overrides(cfg *Config) []string {
	var out []string
	set := func(name string, dst *string, v string) {
		if *dst != "" && *dst != v {
			out = append(out, fmt.Sprintf("%s: flag %q, ha-state.json %q", name, *dst, v))
		}
		*dst = v
	}
	set("node-id", &cfg.NodeID, s.ConsensusID)
	set("consensus-addr", &cfg.ConsensusAddr, s.ConsensusAddr)
	set("api-url", &cfg.APIURL, s.ApiUrl)
	if s.VirtInterface != "" {
		set("virt-interface", &cfg.VirtInterface, s.VirtInterface)
	}
	if cfg.Observer != s.Observer {
		out = append(out, fmt.Sprintf("observer: flag %v, ha-state.json %v", cfg.Observer, s.Observer))
		cfg.Observer = s.Observer
	}
	return out
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// SetStatusExtra sets a function whose result Status reports as
// Announcer (for example the BGP sessions). It must be cheap.
func (n *Node) SetStatusExtra(f func() any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.statusExtra = f
}

// HAState returns a copy of this node's ha-state.
func (n *Node) HAState() HAState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return *n.state
}

func (n *Node) r() *raft.Raft {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.raft
}

// hclogWriter turns hashicorp/raft's log lines into slog records.
type hclogWriter struct{ logger *slog.Logger }

func (w hclogWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		line := sc.Text()
		level := slog.LevelInfo
		switch {
		case strings.Contains(line, "[ERROR]"):
			level = slog.LevelError
		case strings.Contains(line, "[WARN]"):
			level = slog.LevelWarn
		case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[TRACE]"):
			level = slog.LevelDebug
		}
		if i := strings.Index(line, "] "); i >= 0 {
			line = line[i+2:]
		}
		w.logger.Log(context.Background(), level, line, "component", "raft")
	}
	return len(p), nil
}

func (n *Node) raftDir() string { return filepath.Join(n.cfg.DataDir, "raft") }

// start brings up the consensus port and Raft. With bootstrap set it first
// makes a one-node cluster of this node. Called with n.mu not held.
func (n *Node) start(bootstrap *raft.Configuration) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.raft != nil {
		return ErrAlreadyInCluster
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: hclogWriter{n.logger}})
	if err := os.MkdirAll(n.raftDir(), 0o700); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.raftDir(), 2, hl)
	if err != nil {
		return fmt.Errorf("opening snapshot store: %w", err)
	}
	if err := n.catchUpFromSnapshot(snaps); err != nil {
		return err
	}
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.raftDir(), "raft.db")})
	if err != nil {
		return fmt.Errorf("opening raft log: %w", err)
	}
	advertise, err := tcpAddr(n.cfg.ConsensusAddr)
	if err != nil {
		logs.Close()
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.ConsensusAddr)
	if err != nil {
		logs.Close()
		return fmt.Errorf("listening on consensus address: %w", err)
	}
	n.nodeCert.set(n.mat.nodeTLS)
	m := newMux(ln, n.mat.serverTLS(&n.nodeCert), n.logger)
	go m.serve()
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: m.subs[streamRaft], advertise: advertise, conf: n.mat.clientTLS(&n.nodeCert)},
		MaxPool: 4,
		// The I/O deadline of one RPC (snapshots scale it by size). Short,
		// so that a leader notices a partitioned member within seconds and
		// its resumption is observed (and the VIP re-announced) on a heal.
		Timeout: 2 * time.Second,
		Logger:  hl,
	})
	var trans raft.Transport = noFastPathTransport{nt}
	if os.Getenv("RAFTVIP_HEARTBEAT_FAST_PATH") == "1" { // for measuring what declining it costs
		trans = nt
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.Timing.Heartbeat
	rc.ElectionTimeout = n.cfg.Timing.Election
	rc.LeaderLeaseTimeout = n.cfg.Timing.LeaderLease
	rc.CommitTimeout = n.cfg.Timing.CommitTimeout
	rc.NoSnapshotRestoreOnStart = true // the store keeps its own state and applied index
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 128
	rc.Logger = hl
	cache, err := raft.NewLogCache(1024, logs)
	if err != nil {
		nt.Close()
		m.close()
		logs.Close()
		return fmt.Errorf("starting raft: %w", err)
	}
	r, err := raft.NewRaft(rc, &fsm{s: n.Store()}, cache, logs, snaps, trans)
	if err != nil {
		nt.Close()
		m.close()
		logs.Close()
		return fmt.Errorf("starting raft: %w", err)
	}
	if bootstrap != nil {
		if err := r.BootstrapCluster(*bootstrap).Error(); err != nil {
			r.Shutdown()
			nt.Close()
			m.close()
			logs.Close()
			return fmt.Errorf("bootstrapping: %w", err)
		}
	}
	n.raft, n.trans, n.logStore, n.mux = r, nt, logs, m
	n.client = rpcClient(n.mat.clientTLS(&n.nodeCert))
	n.bclient = newStreamClient(n.mat.clientTLS(&n.nodeCert), streamRPC)
	n.bclient.Timeout = 0
	// Blob streams are written 64 KiB at a time (four TLS records), not in
	// the transport's default 4 KiB: a quarter of the records' overhead.
	n.bclient.Transport.(*http.Transport).WriteBufferSize = 64 << 10
	n.bclient.Transport.(*http.Transport).ReadBufferSize = 64 << 10
	n.bclient.Transport.(*http.Transport).ResponseHeaderTimeout = 0
	mux := http.NewServeMux()
	mux.Handle("/internal/", n.internalHandler())
	mux.HandleFunc("/", n.serveRPC)
	rpcSrv := &http.Server{Handler: n.membersOnly(mux), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(n.logger.Handler(), slog.LevelDebug)}
	// The join stream is open to nodes without a certificate: small
	// requests, short deadlines, idle connections closed.
	joinSrv := &http.Server{Handler: n.joinHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(n.logger.Handler(), slog.LevelDebug)}
	n.servers = []*http.Server{rpcSrv, joinSrv}
	go rpcSrv.Serve(m.subs[streamRPC])
	go joinSrv.Serve(m.subs[streamJoin])
	n.wg.Add(2)
	go n.runLeadership(r)
	go n.runReadiness(r)
	obs := make(chan raft.Observation, 16)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.ResumedHeartbeatObservation)
		return ok
	}))
	n.wg.Add(1)
	go n.watchHeals(obs)
	n.wg.Add(1)
	go n.syncBlobs()
	if err := n.loadAPICert(n.mat); err != nil {
		n.logger.Warn("no API certificate", "err", err)
	}
	n.wg.Add(1)
	go n.renewCerts()
	n.logger.Info("consensus started", "node", n.cfg.NodeID, "cluster", n.state.HaID, "addr", n.cfg.ConsensusAddr)
	return nil
}

// catchUpFromSnapshot restores the newest snapshot into the store if the
// store is behind it (a crash between saving a received snapshot and
// restoring it), because Raft is told not to restore on start.
func (n *Node) catchUpFromSnapshot(snaps *raft.FileSnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	applied, _ := n.Store().Applied()
	if applied >= list[0].Index {
		return nil
	}
	n.logger.Warn("store is behind the newest snapshot; restoring it", "applied", applied, "snapshot", list[0].Index)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return err
	}
	defer rc.Close()
	return n.Store().Restore(rc)
}

// Close stops the node: it stops answering as active, shuts Raft down and
// closes the stores. It does not hand over leadership: call Transfer first
// for a graceful stop. Safe to call twice.
//
// The order, each step needing the ones before:
//  1. closed is set under mu: spawn starts nothing more.
//  2. stop is closed and the node's life context ends: every loop and every
//     blob copy returns (they watch one or the other).
//  3. The lease is dropped and published: the announcer and the kernel
//     fence's renewals stop claiming the VIP before anything else goes.
//  4. Raft shuts down (no more applies into the store).
//  5. Close waits for every goroutine the node started (wg).
//  6. The consensus port's servers, the transport and the mux close.
//  7. The Raft log and the store close, then the data dir's lock is
//     released, so that another agent may open it.
//  8. Subscribers' channels close (their readers see the end).
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	r := n.raft
	n.mu.Unlock()
	close(n.stop)
	n.endLife()
	n.leaseMu.Lock()
	n.leaseUntil, n.drainUntil = time.Time{}, time.Time{}
	n.leaseMu.Unlock()
	n.publish()
	var errs []error
	if r != nil {
		errs = append(errs, r.Shutdown().Error())
	}
	n.wg.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.servers {
		s.Close()
	}
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	if n.mux != nil {
		n.mux.close()
	}
	if n.logStore != nil {
		errs = append(errs, n.logStore.Close())
	}
	errs = append(errs, n.Store().Close())
	if n.lock != nil {
		errs = append(errs, n.lock.Close()) // releases the flock
	}
	n.subMu.Lock()
	for ch := range n.subs {
		close(ch)
		delete(n.subs, ch)
	}
	n.subMu.Unlock()
	return errors.Join(errs...)
}

// await waits for a Raft future, or for the node to close. hashicorp/raft
// can leave a future unanswered when it shuts down (a VerifyLeader queued as
// the leader loop exits), so a goroutine that Close waits for must never
// block on Error() alone; the helper goroutine ends when Raft answers.
func (n *Node) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.stop:
		return ErrShutdown
	}
}

// Apply proposes a command through Raft and waits until it is applied
// here. It fails with ErrNotLeader on a follower. The Result carries the
// state errors (store.ErrNotFound, ErrExists, ErrConflict).
func (n *Node) Apply(ctx context.Context, cmd *store.Command) (store.Result, error) {
	r := n.r()
	if r == nil {
		return store.Result{}, ErrNotInCluster
	}
	cmd.Time = time.Now().UnixNano()
	data, err := cmd.Encode()
	if err != nil {
		return store.Result{}, err
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := r.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			// The command may have been in the log when the node stopped.
			return store.Result{}, fmt.Errorf("%w: the node shut down with the write in flight", ErrUnknownOutcome)
		}
		return store.Result{}, translate(err)
	}
	res, ok := f.Response().(store.Result)
	if !ok {
		return store.Result{}, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	return res, nil
}

func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrLeadershipLost):
		// The entry was in this leader's log; a new leader may commit it.
		return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrNotVoter):
		// Refused before the entry reached the log.
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

// ReadBarrier makes a read on this node linearizable: it succeeds only on the
// active node. No wait for the commit index is needed, and none would work
// (the no-op and barrier entries that end the commit index never reach the
// FSM): every acknowledged write is already in this node's store, because
// writes of earlier terms were applied before the node became active (the
// barrier at the start of its term) and writes of this term are acknowledged
// only after this node applied them. The fresh lease means no other node can
// have acknowledged anything since. Passive nodes get ErrNotLeader.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.r() == nil {
		return ErrNotInCluster
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	if !n.IsActive() {
		return ErrNotLeader
	}
	return nil
}

// Leader returns the current leader's ID and consensus address, waiting up
// to ctx for an election to finish.
func (n *Node) Leader(ctx context.Context) (id, addr string, err error) {
	r := n.r()
	if r == nil {
		return "", "", ErrNotInCluster
	}
	for {
		if a, i := r.LeaderWithID(); a != "" {
			return string(i), string(a), nil
		}
		select {
		case <-ctx.Done():
			return "", "", ErrNoLeader
		case <-n.stop:
			return "", "", ErrShutdown
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Snapshot takes a Raft snapshot now (the state machine's database; file
// contents are outside it) and returns how long it took.
func (n *Node) Snapshot() (time.Duration, error) {
	r := n.r()
	if r == nil {
		return 0, ErrNotInCluster
	}
	t0 := time.Now()
	if err := n.await(r.Snapshot()); err != nil {
		return 0, fmt.Errorf("snapshot: %w", translate(err))
	}
	return time.Since(t0), nil
}

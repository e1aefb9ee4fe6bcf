package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// notifier runs the user's notify script on every transition (active,
// passive, fault), as keepalived's notify scripts do: with the node, the
// state, the term and the VIPs in the environment, a timeout, and its output
// logged. Runs are serialised in order on a goroutine of their own, so a slow
// or failing script never holds up a failover; if transitions come faster
// than the script runs, only the newest waiting one is kept.
type notifier struct {
	script  string
	timeout time.Duration
	node    string
	vips    []string
	logger  *slog.Logger

	mu      sync.Mutex
	pending *transition
	wake    chan struct{}
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once
}

type transition struct {
	state  string // active, passive, fault
	term   uint64
	reason string
}

func newNotifier(script string, timeout time.Duration, node string, vips []string, logger *slog.Logger) *notifier {
	n := &notifier{script: script, timeout: timeout, node: node, vips: vips, logger: logger,
		wake: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{})}
	go n.loop()
	return n
}

// notify queues a transition; it never blocks.
func (n *notifier) notify(state string, term uint64, reason string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	n.pending = &transition{state: state, term: term, reason: reason}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) loop() {
	defer close(n.done)
	for {
		select {
		case <-n.stop:
			n.runPending() // the last transition (passive, on a stop) still runs
			return
		case <-n.wake:
			n.runPending()
		}
	}
}

func (n *notifier) runPending() {
	n.mu.Lock()
	tr := n.pending
	n.pending = nil
	n.mu.Unlock()
	if tr != nil {
		n.run(tr)
	}
}

func (n *notifier) run(tr *transition) {
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.script, tr.state)
	cmd.Env = append(os.Environ(),
		"RAFTVIP_STATE="+tr.state,
		"RAFTVIP_NODE="+n.node,
		"RAFTVIP_TERM="+strconv.FormatUint(tr.term, 10),
		"RAFTVIP_VIPS="+strings.Join(n.vips, " "),
		"RAFTVIP_REASON="+tr.reason)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	log := n.logger.With("script", n.script, "state", tr.state, "term", tr.term, "took", time.Since(t0).Round(time.Millisecond),
		"output", strings.TrimSpace(out.String()))
	switch {
	case ctx.Err() != nil:
		log.Error("notify script timed out", "timeout", n.timeout)
	case err != nil:
		log.Error("notify script failed", "err", err)
	default:
		log.Info("notify script ran")
	}
}

// close runs the last queued transition, waits for the script (bounded by
// its timeout) and stops.
func (n *notifier) close() {
	if n == nil {
		return
	}
	n.once.Do(func() { close(n.stop) })
	<-n.done
}

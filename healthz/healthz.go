package healthz

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Status is a node's health, read from memory.
type Status struct {
	NodeID    string `json:"node_id"`
	Role      string `json:"role"` // active, passive, observer, leader, candidate, unconfigured
	InCluster bool   `json:"in_cluster"`
	Active    bool   `json:"active"`   // leader with a fresh lease
	Draining  bool   `json:"draining"` // handing over or shutting down
	Term      uint64 `json:"term"`
	LeaderID  string `json:"leader_id,omitempty"`
	Applied   uint64 `json:"applied_index"`
	Commit    uint64 `json:"commit_index"`
	// LastContact is the time since this node last heard from the leader:
	// 0 on the leader, negative if never.
	LastContact    time.Duration `json:"-"`
	LeaseRemaining time.Duration `json:"-"`
}

// Source gives a node's health. Health is called on every request, from
// any goroutine; it must be cheap and must not block.
type Source interface {
	Health() Status
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Status

// Health calls f.
func (f SourceFunc) Health() Status { return f() }

// Options tune the checks. Zero values take the defaults.
type Options struct {
	// MaxLagEntries is how many committed entries a passive node may not
	// yet have applied and still be healthy; default 1000.
	MaxLagEntries uint64
	// MaxLagTime is how long since a passive node heard from the leader it
	// may be and still be healthy; default 2 s.
	MaxLagTime time.Duration
	// Observe, if set, is called with the check's name and the status code
	// of every answer (for metrics).
	Observe func(check string, code int)
}

// Handler serves the /healthz/ endpoints.
type Handler struct {
	src  Source
	opts Options
	// answered counts answers, for tests and benchmarks.
	answered atomic.Uint64
}

// New returns the handler for src.
func New(src Source, opts Options) *Handler {
	if opts.MaxLagEntries == 0 {
		opts.MaxLagEntries = 1000
	}
	if opts.MaxLagTime <= 0 {
		opts.MaxLagTime = 2 * time.Second
	}
	return &Handler{src: src, opts: opts}
}

// Body is the JSON answer of every check.
type Body struct {
	Check            string `json:"check"`
	OK               bool   `json:"ok"`
	Reason           string `json:"reason,omitempty"`
	LagEntries       uint64 `json:"lag_entries"`
	LastContactMs    int64  `json:"last_contact_ms"`
	LeaseRemainingMs int64  `json:"lease_remaining_ms"`
	Status
}

// check evaluates one named check.
func (h *Handler) check(name string, s Status) (bool, string) {
	lag := uint64(0)
	if s.Commit > s.Applied {
		lag = s.Commit - s.Applied
	}
	caughtUp := func() (bool, string) {
		if s.LeaderID == "" {
			return false, "no leader"
		}
		if lag > h.opts.MaxLagEntries {
			return false, fmt.Sprintf("%d entries behind (at most %d allowed)", lag, h.opts.MaxLagEntries)
		}
		if !s.Active && (s.LastContact < 0 || s.LastContact > h.opts.MaxLagTime) {
			return false, fmt.Sprintf("last heard from the leader %v ago (at most %v allowed)", s.LastContact.Round(time.Millisecond), h.opts.MaxLagTime)
		}
		return true, ""
	}
	switch name {
	case "live":
		return true, ""
	case "active":
		switch {
		case s.Draining:
			return false, "draining: handing the active role over"
		case !s.Active:
			return false, "not the active node (role " + s.Role + ")"
		}
		return true, ""
	case "passive":
		if !s.InCluster {
			return false, "not in a cluster"
		}
		if s.Active || s.Role == "leader" {
			return false, "this is the active node"
		}
		if s.Role == "observer" {
			return false, "an observer never becomes active"
		}
		return caughtUp()
	case "ready":
		if !s.InCluster {
			return false, "not in a cluster"
		}
		return caughtUp()
	}
	return false, ""
}

// The paths the handler answers (mounted at Prefix): what load balancers'
// configurations name (haproxy/ writes PathActive into HAProxy's).
const (
	Prefix      = "/healthz/"
	PathActive  = Prefix + "active"
	PathPassive = Prefix + "passive"
	PathReady   = Prefix + "ready"
	PathLive    = Prefix + "live"
)

var checks = map[string]bool{"active": true, "passive": true, "ready": true, "live": true}

// ServeHTTP answers GET and HEAD on /healthz/{active,passive,ready,live}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !checks[name] {
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"error":"no such check %q; use active, passive, ready or live","code":"not_found"}`+"\n", name)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = fmt.Fprintf(w, `{"error":"%s is not allowed; use GET or HEAD","code":"method_not_allowed"}`+"\n", r.Method)
		return
	}
	s := h.src.Health()
	ok, reason := h.check(name, s)
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	h.answered.Add(1)
	if h.opts.Observe != nil {
		h.opts.Observe(name, code)
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(code)
		return
	}
	b := Body{Check: name, OK: ok, Reason: reason, Status: s,
		LastContactMs: s.LastContact.Milliseconds(), LeaseRemainingMs: s.LeaseRemaining.Milliseconds()}
	if s.Commit > s.Applied {
		b.LagEntries = s.Commit - s.Applied
	}
	out, _ := json.Marshal(b)
	w.WriteHeader(code)
	_, _ = w.Write(append(out, '\n'))
}

// Answered returns how many checks this handler answered.
func (h *Handler) Answered() uint64 { return h.answered.Load() }

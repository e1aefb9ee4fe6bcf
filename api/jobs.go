package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/raftvip/raftvip/store"
)

// Job log headers.
const (
	HeaderLogLength = "X-Raftvip-Log-Length" // the log's whole length
	HeaderLogNext   = "X-Raftvip-Log-Next"   // the offset after the bytes returned
	HeaderLogOffset = "X-Raftvip-Log-Offset" // on an append: the length the client expects the log to have
)

// maxLogRead is the most one read returns.
const maxLogRead = 1 << 20

func (s *Server) jobRoutes() {
	s.mux.HandleFunc("/api/v1/jobs/{id}/log", methods(map[string]http.HandlerFunc{
		http.MethodGet:  s.readJobLog,
		http.MethodPost: s.appendJobLog,
	}))
}

// appendJobLog appends the body to the job's log. With X-Raftvip-Log-Offset
// the append applies only if the log has exactly that length, so a client
// that retries after a failover never appends twice (409 tells it the
// append had already gone through, with the length in the header).
func (s *Server) appendJobLog(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		fail(w, err)
		return
	}
	cmd := &store.Command{Op: store.OpJobAppend, Job: r.PathValue("id"), Data: body}
	if v := r.Header.Get(HeaderLogOffset); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fail(w, fmt.Errorf("%w: %s %q must be a number", store.ErrInvalid, HeaderLogOffset, v))
			return
		}
		cmd.IfRev = &n
	}
	if !s.validateAndRoute(w, r, cmd, body) {
		return
	}
	res, err := s.apply(r.Context(), cmd)
	if err != nil {
		if _, length, rerr := s.node.Store().ReadJobLog(cmd.Job, 0, 0); rerr == nil {
			w.Header().Set(HeaderLogLength, strconv.FormatUint(length, 10))
		}
		fail(w, err)
		return
	}
	w.Header().Set(HeaderLogLength, strconv.FormatUint(res.LogLength, 10))
	writeJSON(w, http.StatusOK, map[string]uint64{"length": res.LogLength, "rev": res.Index})
}

// readJobLog returns the log from ?offset= (default 0). With ?follow it
// waits (up to ?wait=, default 30 s, at most 60 s) for bytes past offset.
func (s *Server) readJobLog(w http.ResponseWriter, r *http.Request) {
	job := r.PathValue("id")
	if err := store.ValidKey(job); err != nil {
		fail(w, fmt.Errorf("job ID: %w", err))
		return
	}
	q := r.URL.Query()
	var offset uint64
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fail(w, fmt.Errorf("%w: offset %q must be a number", store.ErrInvalid, v))
			return
		}
		offset = n
	}
	wait := 30 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			fail(w, fmt.Errorf("%w: wait %q must be a duration up to 1m", store.ErrInvalid, v))
			return
		}
		wait = d
	}
	if !s.readHere(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		changed := s.node.Store().JobsChanged()
		data, length, err := s.node.Store().ReadJobLog(job, offset, maxLogRead)
		if err != nil {
			fail(w, err)
			return
		}
		if len(data) > 0 || !q.Has("follow") {
			w.Header().Set(HeaderLogLength, strconv.FormatUint(length, 10))
			w.Header().Set(HeaderLogNext, strconv.FormatUint(offset+uint64(len(data)), 10))
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data)
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			w.Header().Set(HeaderLogLength, strconv.FormatUint(length, 10))
			w.Header().Set(HeaderLogNext, strconv.FormatUint(offset, 10))
			w.WriteHeader(http.StatusOK)
			return
		}
		if !s.node.IsActive() && !q.Has("stale") {
			fail(w, fmt.Errorf("this node stopped being active while following: %w", errNotActiveAnymore))
			return
		}
	}
}

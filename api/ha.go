package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// The HA bodies are the client package's (one definition for both ends).
type (
	// EnrollRequest is client.EnrollRequest.
	EnrollRequest = client.EnrollRequest
	// JoinRequest is client.JoinRequest.
	JoinRequest = client.JoinRequest
	// TransferRequest is client.TransferRequest.
	TransferRequest = client.TransferRequest
	// TokenRequest is client.TokenRequest.
	TokenRequest = client.TokenRequest
	// Introduction is client.Introduction.
	Introduction = client.Introduction
)

// decodeJSON reads a small JSON body strictly.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	body, err := s.readJSONBody(w, r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := store.CheckJSON(body); err != nil {
		return nil, fmt.Errorf("%w: body: %v", store.ErrInvalid, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("%w: body: %v", store.ErrInvalid, err)
	}
	return body, nil
}

func (s *Server) haRoutes() {
	m := s.mux
	m.HandleFunc(client.HANode, methods(map[string]http.HandlerFunc{http.MethodGet: s.haNode}))
	m.HandleFunc(client.HAStatus, methods(map[string]http.HandlerFunc{http.MethodGet: s.haStatus}))
	m.HandleFunc(client.HAState, methods(map[string]http.HandlerFunc{http.MethodGet: s.haState}))
	m.HandleFunc(client.HAFailoverSafe, methods(map[string]http.HandlerFunc{http.MethodGet: s.haFailoverSafe}))
	m.HandleFunc(client.HAJoinInfo, methods(map[string]http.HandlerFunc{http.MethodGet: s.haJoinInfo}))
	m.HandleFunc(client.HAToken, methods(map[string]http.HandlerFunc{http.MethodPost: s.haToken}))
	m.HandleFunc(client.HAInit, methods(map[string]http.HandlerFunc{http.MethodPost: s.haInit}))
	m.HandleFunc(client.HAJoin, methods(map[string]http.HandlerFunc{http.MethodPost: s.haJoin}))
	m.HandleFunc(client.HAMembers, methods(map[string]http.HandlerFunc{
		http.MethodGet:  s.haMembers,
		http.MethodPost: s.enroll,
	}))
	m.HandleFunc(client.HAMembers+"/{id}", methods(map[string]http.HandlerFunc{http.MethodDelete: s.haRemove}))
	m.HandleFunc(client.HARotateCerts, methods(map[string]http.HandlerFunc{http.MethodPost: s.haRotateCerts}))
	m.HandleFunc(client.HASnapshot, methods(map[string]http.HandlerFunc{http.MethodPost: s.haSnapshot}))
	m.HandleFunc(client.HATransfer, methods(map[string]http.HandlerFunc{http.MethodPost: s.haTransfer}))
}

// haNode answers GET /api/v1/ha/node.
func (s *Server) haNode(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.node.FullStatus())
}

// haStatus answers GET /api/v1/ha/status.
func (s *Server) haStatus(w http.ResponseWriter, r *http.Request) {
	cs, err := s.node.ClusterStatus(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

// haState answers GET /api/v1/ha/state.
func (s *Server) haState(w http.ResponseWriter, r *http.Request) {
	st := s.node.HAState()
	if st.Token != "" {
		st.Token = "(set)"
	}
	writeJSON(w, http.StatusOK, st)
}

// haFailoverSafe answers GET /api/v1/ha/failover-safe.
func (s *Server) haFailoverSafe(w http.ResponseWriter, r *http.Request) {
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 5*time.Second {
			fail(w, fmt.Errorf("%w: wait %q must be a duration up to 5s", store.ErrInvalid, v))
			return
		}
		wait = d
	}
	ok, reason, err := s.node.FailoverSafe(r.Context(), wait)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"safe": ok, "reason": reason})
}

// haJoinInfo answers GET /api/v1/ha/join-info.
func (s *Server) haJoinInfo(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	info, err := s.node.JoinInfo(ctx)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// haToken answers POST /api/v1/ha/token.
func (s *Server) haToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if _, err := s.decodeJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	ttl := time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			fail(w, fmt.Errorf("%w: ttl %q is not a duration", store.ErrInvalid, req.TTL))
			return
		}
		ttl = d
	}
	tok, err := s.node.Token(ttl)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Introduction{JoinURL: s.node.HAState().ApiUrl, Token: tok})
}

// haInit answers POST /api/v1/ha/init.
func (s *Server) haInit(w http.ResponseWriter, r *http.Request) {
	var opts consensus.InitOptions
	if _, err := s.decodeJSON(w, r, &opts); err != nil {
		fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.node.Init(ctx, opts); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node.Status())
}

// haJoin answers POST /api/v1/ha/join.
func (s *Server) haJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if _, err := s.decodeJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if req.JoinURL == "" || req.Token == "" {
		fail(w, fmt.Errorf("%w: join_url and token are required", store.ErrInvalid))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	if err := s.node.Join(ctx, req.JoinURL, req.Token); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.node.Status())
}

// haMembers answers GET /api/v1/ha/members.
func (s *Server) haMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := s.node.Members()
	if err != nil {
		fail(w, err)
		return
	}
	if ms == nil {
		ms = []store.Member{}
	}
	writeJSON(w, http.StatusOK, ms)
}

// haRemove answers DELETE /api/v1/ha/members/{id}.
func (s *Server) haRemove(w http.ResponseWriter, r *http.Request) {
	if !s.route(w, r, nil) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.node.Remove(ctx, r.PathValue("id")); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": r.PathValue("id")})
}

// haRotateCerts answers POST /api/v1/ha/rotate-certs.
func (s *Server) haRotateCerts(w http.ResponseWriter, r *http.Request) {
	// Every member renews its own certificates (each holds the CA
	// key): this node first, then the others over the consensus port.
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	got, err := s.node.RotateClusterCerts(ctx)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, got)
}

// haSnapshot answers POST /api/v1/ha/snapshot.
func (s *Server) haSnapshot(w http.ResponseWriter, r *http.Request) {
	d, err := s.node.Snapshot()
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": s.node.ID(), "took_ms": float64(d.Microseconds()) / 1000})
}

// haTransfer answers POST /api/v1/ha/transfer.
func (s *Server) haTransfer(w http.ResponseWriter, r *http.Request) {
	var req TransferRequest
	body, err := s.decodeJSON(w, r, &req)
	if err != nil {
		fail(w, err)
		return
	}
	if !s.route(w, r, body) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	to, err := s.node.Transfer(ctx, req.To)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"from": s.node.ID(), "to": to})
}

// enroll issues a token and tells the unjoined node at req.URL to join.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if _, err := s.decodeJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail(w, fmt.Errorf("%w: url %q must be the new node's API URL (https://host:port)", store.ErrInvalid, req.URL))
		return
	}
	pin := consensus.BootstrapPin(req.Secret)
	if pin == "" {
		fail(w, fmt.Errorf("%w: secret, the new node's bootstrap secret (the %s file in its data dir, rvb1.…), is required", store.ErrInvalid, consensus.BootstrapSecretFile))
		return
	}
	tok, err := s.node.Token(10 * time.Minute)
	if err != nil {
		fail(w, err)
		return
	}
	body, _ := json.Marshal(JoinRequest{JoinURL: s.node.HAState().ApiUrl, Token: tok})
	ctx, cancel := context.WithTimeout(r.Context(), 90*time.Second)
	defer cancel()
	jreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(req.URL, "/")+"/api/v1/ha/join", bytes.NewReader(body))
	if err != nil {
		fail(w, err)
		return
	}
	jreq.Header.Set("Content-Type", "application/json")
	jreq.Header.Set("Authorization", "Bearer "+req.Secret)
	// The new node is known by the certificate its secret names: the
	// secret and the join token go to that node only.
	c := &http.Client{Transport: consensus.APITrust{Pin: pin}.Transport(nil),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer c.CloseIdleConnections()
	resp, err := c.Do(jreq)
	if err != nil {
		writeError(w, http.StatusBadGateway, "enroll_failed", fmt.Sprintf("reaching the new node at %s: %v", req.URL, err))
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}

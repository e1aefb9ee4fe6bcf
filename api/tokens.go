package api

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/raftvip/raftvip/store"
)

// TokenCreate asks for a named API token.
type TokenCreate struct {
	Name string `json:"name"`
	Role string `json:"role"` // read, write or admin
}

// TokenInfo describes a named token; Token, the secret, is in the answer
// to its creation only (the cluster keeps its SHA-256).
type TokenInfo struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	Token   string    `json:"token,omitempty"`
}

// tokenPrefix marks named API tokens, so that one in a log or a paste is
// recognisable.
const tokenPrefix = "rvt_"

func (s *Server) tokenRoutes() {
	s.mux.HandleFunc("/api/v1/tokens", methods(map[string]http.HandlerFunc{
		http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			if !s.readHere(w, r) {
				return
			}
			ts, err := s.node.Store().Tokens()
			if err != nil {
				fail(w, err)
				return
			}
			out := make([]TokenInfo, 0, len(ts))
			for _, t := range ts {
				out = append(out, TokenInfo{Name: t.Name, Role: t.Role, Created: time.Unix(0, t.Created).UTC()})
			}
			writeJSON(w, http.StatusOK, out)
		},
		http.MethodPost: s.createToken,
	}))
	s.mux.HandleFunc("/api/v1/tokens/{name}", methods(map[string]http.HandlerFunc{
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) {
			cmd := &store.Command{Op: store.OpTokenDelete, Key: r.PathValue("name")}
			if !s.validateAndRoute(w, r, cmd, nil) {
				return
			}
			if _, err := s.apply(r.Context(), cmd); err != nil {
				fail(w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"revoked": cmd.Key})
		},
	}))
}

// createToken makes a named token: the secret is made here, shown once, and
// only its SHA-256 is replicated.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenCreate
	body, err := s.decodeJSON(w, r, &req)
	if err != nil {
		fail(w, err)
		return
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		fail(w, err)
		return
	}
	secret := tokenPrefix + hex.EncodeToString(raw)
	cmd := &store.Command{Op: store.OpTokenPut, Token: &store.Token{Name: req.Name, Role: req.Role, SHA256: store.HashToken(secret)}}
	if !s.validateAndRoute(w, r, cmd, body) {
		return
	}
	if _, err := s.apply(r.Context(), cmd); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, TokenInfo{Name: req.Name, Role: req.Role, Created: time.Now().UTC(), Token: secret})
}

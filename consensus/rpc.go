package consensus

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/store"
)

// SetRPCHandler sets the handler that serves member HTTP (forwarded client
// requests) on the consensus port. It may be called at any time; until it
// is, such requests get 503.
func (n *Node) SetRPCHandler(h http.Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rpcHandler = h
}

func (n *Node) serveRPC(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	h := n.rpcHandler
	n.mu.Unlock()
	if h == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "this node's API is not up yet", Code: "starting"})
		return
	}
	h.ServeHTTP(w, r)
}

// RPCClient returns an HTTP client that reaches other members' consensus
// ports with this node's member certificate. Use URLs of the form
// https://<consensus-addr>/path.
func (n *Node) RPCClient() (*http.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.client == nil {
		return nil, ErrNotInCluster
	}
	return n.client, nil
}

// StreamClient is RPCClient without overall time limits, for requests
// whose bodies are large streams (file uploads forwarded to the leader).
func (n *Node) StreamClient() (*http.Client, error) { return n.blobClient() }

// readAllLimit reads at most limit bytes.
func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body larger than %d bytes", limit)
	}
	return b, nil
}

// errorBody is the JSON error shape of every raftvip HTTP answer.
type errorBody = client.ErrorBody

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (n *Node) notLeader(w http.ResponseWriter) {
	var addr string
	if r := n.r(); r != nil {
		a, _ := r.LeaderWithID()
		addr = string(a)
	}
	writeJSON(w, http.StatusMisdirectedRequest, errorBody{Error: "this node is not the leader", Code: "not_leader", LeaderAddr: addr})
}

// postFollowingLeader POSTs JSON to the member at *addr, following
// not-leader answers to the leader they name, a few times.
func postFollowingLeader(ctx context.Context, c *http.Client, addr *string, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %v)", ErrTimeout, last)
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+*addr+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			last = err
			continue
		}
		raw, rerr := readAllLimit(resp.Body, 1<<20)
		resp.Body.Close()
		if rerr != nil {
			return rerr
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			if out == nil {
				return nil
			}
			return json.Unmarshal(raw, out)
		case resp.StatusCode == http.StatusMisdirectedRequest || resp.StatusCode == http.StatusServiceUnavailable:
			var eb errorBody
			_ = json.Unmarshal(raw, &eb)
			if eb.LeaderAddr != "" {
				*addr = eb.LeaderAddr
			}
			last = fmt.Errorf("%s: %s", resp.Status, eb.Error)
			continue
		default:
			var eb errorBody
			if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
				if eb.Code == "bad_token" {
					return fmt.Errorf("%w: %s", ErrBadToken, eb.Error)
				}
				if eb.Code == "conflict" {
					return fmt.Errorf("%w: %s", ErrRefused, eb.Error)
				}
				return fmt.Errorf("%s: %s", resp.Status, eb.Error)
			}
			return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(raw))
		}
	}
	return last
}

func (n *Node) getInternal(ctx context.Context, addr, path string, out any) error {
	return n.callInternal(ctx, http.MethodGet, addr, path, out)
}

// callInternal sends a bodiless request to a member's /internal/ path and
// decodes its JSON answer, within a second.
func (n *Node) callInternal(ctx context.Context, method, addr, path string, out any) error {
	c, err := n.RPCClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := readAllLimit(resp.Body, 1<<20)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.Unmarshal(body, out)
}

// internalHandler serves member-only requests on the consensus port (the
// mux has already checked the member certificate).
func (n *Node) internalHandler() http.Handler {
	mux := http.NewServeMux()
	n.serveBlobs(mux)
	mux.HandleFunc("GET /internal/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, n.FullStatus())
	})
	mux.HandleFunc("GET /internal/hash", func(w http.ResponseWriter, req *http.Request) {
		idx, err := strconv.ParseUint(req.URL.Query().Get("index"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "index must be a number", Code: "bad_request"})
			return
		}
		h, ok := n.Store().HashAt(idx)
		if !ok {
			writeJSON(w, http.StatusNotFound, errorBody{Error: "index not remembered here", Code: "not_found"})
			return
		}
		writeJSON(w, http.StatusOK, hashAnswer{Index: idx, Hash: h})
	})
	mux.HandleFunc("POST /internal/rotate-certs", func(w http.ResponseWriter, _ *http.Request) {
		got, err := n.RotateCerts()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: "unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, got)
	})
	mux.HandleFunc("GET /internal/secrets", func(w http.ResponseWriter, req *http.Request) {
		// membersOnly let the caller through: it is in the Raft
		// configuration (a join that never became a membership gets nothing).
		n.mu.Lock()
		mat, st := n.mat, *n.state
		n.mu.Unlock()
		if mat == nil || len(mat.CAKeyPEM) == 0 || st.Token == "" {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "this member does not hold the cluster's secrets yet", Code: "unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, secretsResponse{CAKey: string(mat.CAKeyPEM), APIToken: st.Token})
	})
	mux.HandleFunc("POST /internal/add-voter", func(w http.ResponseWriter, req *http.Request) {
		var m store.Member
		body, err := readAllLimit(req.Body, 64<<10)
		if err == nil {
			err = json.Unmarshal(body, &m)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Code: "bad_request"})
			return
		}
		// A member may only add itself: its certificate names it.
		if cn := req.TLS.PeerCertificates[0].Subject.CommonName; cn != m.ID {
			writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf("certificate is for %s, not %s", cn, m.ID), Code: "forbidden"})
			return
		}
		switch err := n.addVoter(req.Context(), &m); {
		case err == nil:
			writeJSON(w, http.StatusOK, map[string]string{"added": m.ID})
		case errors.Is(err, ErrNotLeader):
			n.notLeader(w)
		case errors.Is(err, ErrRefused):
			writeJSON(w, http.StatusConflict, errorBody{Error: err.Error(), Code: "conflict"})
		case errors.Is(err, ErrUnknownOutcome), errors.Is(err, ErrNoLeader), errors.Is(err, ErrTimeout):
			// Adding a member is idempotent (same ID and address), so a
			// change whose outcome is unknown is simply asked for again,
			// of whichever node leads next.
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: "retry"})
		default:
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error(), Code: "internal"})
		}
	})
	return mux
}

// rpcClient is an HTTP client for member traffic on consensus ports.
func rpcClient(conf *tls.Config) *http.Client { return newStreamClient(conf, streamRPC) }

func newStreamClient(conf *tls.Config, kind byte) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dialStream(ctx, addr, conf, kind)
			},
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
	}
}

// configCacheAge is how long membersOnly trusts the configuration it last
// read from Raft (each read is a round trip through Raft's main loop).
const configCacheAge = 100 * time.Millisecond

// inConfiguration reports whether the server ID is in this node's latest
// Raft configuration (as read at most configCacheAge ago).
func (n *Node) inConfiguration(id string) bool {
	n.cfgMu.Lock()
	defer n.cfgMu.Unlock()
	// Read again when the copy is old, or when it does not name id and is
	// not brand new (a node that joined a moment ago; at most one read per
	// 5 ms for callers that are refused).
	if age := time.Since(n.cfgRead); age > configCacheAge || (!n.cfgIDs[id] && age > 5*time.Millisecond) {
		r := n.r()
		if r == nil {
			return false
		}
		f := r.GetConfiguration()
		if f.Error() != nil {
			return false
		}
		n.cfgIDs = map[string]bool{}
		for _, s := range f.Configuration().Servers {
			n.cfgIDs[string(s.ID)] = true
		}
		n.cfgRead = time.Now()
	}
	return n.cfgIDs[id]
}

// membersOnly lets through the member channel only callers whose
// certificate names a server in the Raft configuration, so that a removed
// node is refused at once (within configCacheAge) and a certificate from a
// join that never became a membership opens nothing. The one exception is
// add-voter, by which a joining node enters the configuration.
func (n *Node) membersOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "a member certificate is required", Code: "unauthorized"})
			return
		}
		if req.URL.Path != "/internal/add-voter" {
			if cn := req.TLS.PeerCertificates[0].Subject.CommonName; !n.inConfiguration(cn) {
				writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf("%s is not in the cluster's configuration (removed, or never joined)", cn), Code: "not_a_member"})
				return
			}
		}
		h.ServeHTTP(w, req)
	})
}

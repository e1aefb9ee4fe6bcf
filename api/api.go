package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// Headers raftvip sets or reads.
const (
	HeaderNode        = "X-Raftvip-Node"         // the node that served the request
	HeaderForwardedBy = "X-Raftvip-Forwarded-By" // set on requests a passive node forwards, and on the answers it relays
	HeaderRedirect    = "X-Raftvip-Redirect"     // "1": answer 307 to the leader instead of forwarding
	HeaderStale       = "X-Raftvip-Stale"        // "true" on stale reads
	HeaderApplied     = "X-Raftvip-Applied-Index"
	HeaderLag         = "X-Raftvip-Lag"             // entries the stale read may lack
	HeaderLastContact = "X-Raftvip-Last-Contact-Ms" // since this node last heard from the leader
)

// DefaultMaxBody is the default limit on request bodies.
const DefaultMaxBody = 1 << 20

// Server is the client API of one node.
type Server struct {
	node    Node
	logger  *slog.Logger
	maxBody int64
	mux     *http.ServeMux
	onApply func(time.Duration)
	maxFile int64
}

// SetMaxFileSize sets the largest file an upload may carry (default
// DefaultMaxFileSize). Call it before serving.
func (s *Server) SetMaxFileSize(n int64) {
	if n > 0 {
		s.maxFile = n
	}
}

// ObserveApply sets a function told the latency of every write this node
// applies as the active node (for metrics). Call it before serving.
func (s *Server) ObserveApply(f func(time.Duration)) { s.onApply = f }

// New returns the API of node. maxBody <= 0 means DefaultMaxBody.
func New(node Node, logger *slog.Logger, maxBody int64) *Server {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	s := &Server{node: node, logger: logger, maxBody: maxBody, mux: http.NewServeMux(), maxFile: DefaultMaxFileSize}
	s.routes()
	return s
}

// CodeOutcomeUnknown is the code of the one answer that does not say
// whether the request changed anything (HTTP 504): the write was proposed
// and then leadership was lost, the node stopped, or the connection to the
// leader that a passive node forwarded it to broke after the request was
// sent. Every other error answer is a refusal made before anything was
// proposed, and the request changed nothing.
const CodeOutcomeUnknown = "outcome_unknown"

// Error is the JSON body of every error answer (client.ErrorBody).
type Error = client.ErrorBody

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, Error{Error: msg, Code: code})
}

// fail maps an error to its status and code.
func fail(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, "request_timeout", fmt.Sprintf("the request body sent nothing for %v", bodyIdleTimeout))
	case errors.Is(err, errMediaType):
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error())
	case errors.Is(err, errTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, store.ErrDigest):
		writeError(w, http.StatusBadRequest, "digest_mismatch", err.Error())
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusPreconditionFailed, "revision_mismatch", err.Error())
	case errors.Is(err, store.ErrUnknownVersion):
		writeError(w, http.StatusInternalServerError, "unknown_version", err.Error())
	case errors.Is(err, consensus.ErrUnknownOutcome):
		writeError(w, http.StatusGatewayTimeout, CodeOutcomeUnknown, err.Error()+"; the write may or may not have been applied: read before retrying")
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrShutdown), errors.Is(err, errNotActiveAnymore):
		writeError(w, http.StatusServiceUnavailable, "no_leader", err.Error())
	case errors.Is(err, consensus.ErrNotInCluster):
		writeError(w, http.StatusServiceUnavailable, "not_in_cluster", err.Error())
	case errors.Is(err, consensus.ErrAlreadyInCluster), errors.Is(err, consensus.ErrRefused):
		writeError(w, http.StatusConflict, "refused", err.Error())
	case errors.Is(err, consensus.ErrBadToken):
		writeError(w, http.StatusForbidden, "bad_token", err.Error())
	case errors.Is(err, consensus.ErrUnknownMember):
		writeError(w, http.StatusNotFound, "unknown_member", err.Error())
	case errors.Is(err, consensus.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		// Raised before anything was proposed (a queue that did not take
		// the command, a file that did not reach a quorum): a refusal.
		writeError(w, http.StatusServiceUnavailable, "timeout", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// ServeHTTP serves the API. Requests that arrive over the consensus port
// carry a verified member certificate and need no bearer token.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderNode, s.node.ID())
	if uncleanPath(r.URL.Path) || uncleanPath(r.URL.EscapedPath()) {
		// As Guard does on the agent's listeners; requests forwarded over
		// the consensus port come here without it.
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("path %q has a '.', '..' or empty segment", r.URL.EscapedPath()))
		return
	}
	if !openPaths[r.URL.Path] {
		have, want := s.role(r), needs(r)
		if have == "" {
			msg := "missing or wrong bearer token (Authorization: Bearer <Token from ha-state.json, or a named token>)"
			if s.node.HAState().Token == "" {
				msg = "this node is not in a cluster yet and answers only to its bootstrap secret (Authorization: Bearer <the " + consensus.BootstrapSecretFile + " file in its data dir>)"
			}
			writeError(w, http.StatusUnauthorized, "unauthorized", msg)
			return
		}
		if store.RoleRank(have) < store.RoleRank(want) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("a %s token cannot %s %s: it needs %s", have, r.Method, r.URL.Path, want))
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func fromMember(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

var openPaths = map[string]bool{"/api/v1/ha/join-info": true, "/api/v1/ha/node": true}

// role says what the request's credentials allow ("" for none): members
// (over the consensus port, after the passive node that forwarded the
// request checked its caller), the cluster token from ha-state.json and,
// before the node is in a cluster, its bootstrap secret are admin; a named
// token has its own role.
func (s *Server) role(r *http.Request) string {
	if fromMember(r) {
		return store.RoleAdmin
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return ""
	}
	tok := s.node.HAState().Token
	if tok == "" {
		// Not in a cluster yet: only the holder of the bootstrap secret
		// (from this node's data dir) may initialise, enroll or join it.
		if sec := s.node.BootstrapSecret(); sec != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sec)) == 1 {
			return store.RoleAdmin
		}
		return ""
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
		return store.RoleAdmin
	}
	if t, ok := s.node.Store().TokenBySecret(got); ok {
		return t.Role
	}
	return ""
}

// needs is the role a request requires: reading is read (but ha-state,
// which holds the cluster token, and the token list are admin); HA
// administration and tokens are admin; every other change is write.
func needs(r *http.Request) string {
	p := r.URL.Path
	admin := strings.HasPrefix(p, "/api/v1/tokens") || p == "/api/v1/ha/state"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if admin {
			return store.RoleAdmin
		}
		return store.RoleRead
	}
	if admin || strings.HasPrefix(p, "/api/v1/ha/") {
		return store.RoleAdmin
	}
	return store.RoleWrite
}

// methods dispatches by method and answers 405 with a JSON body otherwise.
func methods(h map[string]http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, ok := h[r.Method]
		if !ok && r.Method == http.MethodHead {
			f, ok = h[http.MethodGet]
		}
		if !ok {
			allow := make([]string, 0, len(h))
			for m := range h {
				allow = append(allow, m)
			}
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		f(w, r)
	}
}

func (s *Server) routes() {
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	})
	s.mux.HandleFunc("/api/v1/objects/{kind}", methods(map[string]http.HandlerFunc{http.MethodGet: s.list}))
	s.mux.HandleFunc("/api/v1/objects/{kind}/{key}", methods(map[string]http.HandlerFunc{
		http.MethodGet:    s.get,
		http.MethodPost:   s.writeObject(store.OpCreate),
		http.MethodPut:    s.writeObject(store.OpPut),
		http.MethodPatch:  s.writeObject(store.OpPatch),
		http.MethodDelete: s.writeObject(store.OpDelete),
	}))
	s.haRoutes()
	s.fileRoutes()
	s.jobRoutes()
	s.tokenRoutes()
}

// readBody reads the request body within the limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
}

// errMediaType is a JSON endpoint's answer to a body declared as something
// else (HTTP 415).
var errMediaType = errors.New("unsupported media type")

// readJSONBody reads a body that must be JSON: one whose Content-Type, if
// any, is application/json or a +json type (application/merge-patch+json).
// The JSON itself is checked where it is used.
func (s *Server) readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
			return nil, fmt.Errorf("%w: Content-Type %q: the body must be application/json", errMediaType, ct)
		}
	}
	return s.readBody(w, r)
}

// parseRev reads If-Match / If-None-Match into a required revision.
func parseRev(r *http.Request) (*uint64, error) {
	inm, hasINM := r.Header["If-None-Match"]
	im, hasIM := r.Header["If-Match"]
	switch {
	case hasINM && hasIM:
		return nil, fmt.Errorf("%w: If-Match and If-None-Match together contradict each other", store.ErrInvalid)
	case hasINM:
		if len(inm) != 1 || strings.TrimSpace(inm[0]) != "*" {
			return nil, fmt.Errorf("%w: If-None-Match supports only *", store.ErrInvalid)
		}
		zero := uint64(0)
		return &zero, nil
	case !hasIM:
		return nil, nil
	}
	v := strings.TrimSpace(im[0])
	if len(im) != 1 || strings.HasPrefix(v, "W/") {
		return nil, fmt.Errorf("%w: If-Match must be one strong ETag such as \"12\" (a weak one never matches)", store.ErrInvalid)
	}
	unq, ok := strings.CutPrefix(v, `"`)
	if ok {
		unq, ok = strings.CutSuffix(unq, `"`)
	}
	n, err := strconv.ParseUint(unq, 10, 64)
	if !ok || err != nil || n == 0 || strconv.FormatUint(n, 10) != unq {
		return nil, fmt.Errorf("%w: If-Match %q must be a revision in quotes, such as \"12\"", store.ErrInvalid, v)
	}
	return &n, nil
}

// routeReader decides where a request that needs the active node is served:
// here (true), or it has been forwarded with body (length bytes, -1 unknown),
// redirected or refused (false). A body that is a stream is forwarded as a
// stream.
func (s *Server) routeReader(w http.ResponseWriter, r *http.Request, body io.Reader, length int64) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 3*s.node.Timing().Election)
	defer cancel()
	for {
		if s.node.IsActive() {
			return true
		}
		id, addr, err := s.node.Leader(ctx)
		if err != nil {
			fail(w, err)
			return false
		}
		if id != s.node.ID() {
			s.forward(w, r, body, length, id, addr)
			return false
		}
		// We lead but are not active yet (new term, lease pending): wait.
		select {
		case <-ctx.Done():
			fail(w, consensus.ErrNoLeader)
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// validateAndRoute refuses a bad command before anything is forwarded or
// proposed, then routes the request (see route); it reports whether this
// node goes on to apply cmd.
func (s *Server) validateAndRoute(w http.ResponseWriter, r *http.Request, cmd *store.Command, body []byte) bool {
	if err := cmd.Validate(); err != nil {
		fail(w, err)
		return false
	}
	return s.route(w, r, body)
}

// route is routeReader for a body already read.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) bool {
	return s.routeReader(w, r, bytes.NewReader(body), int64(len(body)))
}

func (s *Server) forward(w http.ResponseWriter, r *http.Request, body io.Reader, length int64, leaderID, leaderAddr string) {
	if r.Header.Get(HeaderForwardedBy) != "" {
		// Forwarded once already: the leader moved. Let the client retry.
		fail(w, consensus.ErrNotLeader)
		return
	}
	if r.Header.Get(HeaderRedirect) == "1" || r.URL.Query().Has("redirect") {
		ms, _ := s.node.Members()
		for _, m := range ms {
			if m.ID == leaderID && m.APIURL != "" {
				w.Header().Set("Location", strings.TrimRight(m.APIURL, "/")+r.URL.RequestURI())
				writeJSON(w, http.StatusTemporaryRedirect, map[string]string{"leader_id": leaderID, "location": w.Header().Get("Location")})
				return
			}
		}
		fail(w, fmt.Errorf("%w: leader %s has no known API URL", consensus.ErrNoLeader, leaderID))
		return
	}
	s.forwardReader(w, r, body, length, leaderID, leaderAddr)
}

// forwardedHeaders are the request headers a forwarded request keeps.
var forwardedHeaders = []string{"Content-Type", "If-Match", "If-None-Match", "Accept", "Range", "If-Range",
	"If-Modified-Since", "If-Unmodified-Since", HeaderChecksum, "Content-Digest", HeaderLogOffset}

// forwardReader sends the request, with body streamed, to the leader over
// the members' TLS channel and relays the answer, streamed.
func (s *Server) forwardReader(w http.ResponseWriter, r *http.Request, body io.Reader, length int64, leaderID, leaderAddr string) {
	client, err := s.node.StreamClient()
	if err != nil {
		fail(w, err)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "https://"+leaderAddr+r.URL.RequestURI(), body)
	if err != nil {
		fail(w, err)
		return
	}
	req.ContentLength = length
	for _, h := range forwardedHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(HeaderForwardedBy, s.node.ID())
	// Once the leader has the request, a broken connection leaves a write's
	// outcome unknown; before that, the request was refused.
	var sent atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteHeaders: func() { sent.Store(true) },
	}))
	resp, err := client.Do(req)
	if err != nil {
		if sent.Load() && r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusGatewayTimeout, CodeOutcomeUnknown, fmt.Sprintf("forwarding to leader %s: %v; the write may or may not have been applied: read before retrying", leaderID, err))
			return
		}
		writeError(w, http.StatusBadGateway, "forward_failed", fmt.Sprintf("forwarding to leader %s: %v", leaderID, err))
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.Header().Set(HeaderForwardedBy, s.node.ID()) // this answer was relayed by a passive node
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func setObjectHeaders(w http.ResponseWriter, o *store.Object) {
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, o.Rev))
}

// staleRead answers from this node's own state and says how stale it may be.
func (s *Server) staleRead(w http.ResponseWriter) {
	st := s.node.Status()
	w.Header().Set(HeaderStale, "true")
	w.Header().Set(HeaderApplied, strconv.FormatUint(st.AppliedIndex, 10))
	var lag uint64
	if st.CommitIndex > st.AppliedIndex {
		lag = st.CommitIndex - st.AppliedIndex
	}
	w.Header().Set(HeaderLag, strconv.FormatUint(lag, 10))
	w.Header().Set(HeaderLastContact, strconv.FormatInt(st.LastContactMs, 10))
}

// readHere decides whether a read is served here: stale reads always are,
// linearizable ones only on the active node after a read barrier.
func (s *Server) readHere(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Has("stale") {
		s.staleRead(w)
		return true
	}
	if !s.route(w, r, nil) {
		return false
	}
	if err := s.node.ReadBarrier(r.Context()); err != nil {
		fail(w, err)
		return false
	}
	return true
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	kind, key := r.PathValue("kind"), r.PathValue("key")
	if err := store.ValidKind(kind); err != nil {
		fail(w, err)
		return
	}
	if err := store.ValidKey(key); err != nil {
		fail(w, err)
		return
	}
	if !s.readHere(w, r) {
		return
	}
	o, err := s.node.Store().Get(kind, key)
	if err != nil {
		fail(w, err)
		return
	}
	setObjectHeaders(w, o)
	writeJSON(w, http.StatusOK, o)
}

// listOptions reads ?prefix, ?after and ?limit, each at most once; no other
// parameter is accepted (a typo would silently list everything). The
// cursor and the prefix are text a key or path could hold: valid UTF-8 of
// at most MaxPathLen bytes with no control characters.
func listOptions(r *http.Request) (store.ListOptions, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return store.ListOptions{}, fmt.Errorf("%w: query: %v", store.ErrInvalid, err)
	}
	for k, v := range q {
		switch {
		case k != "prefix" && k != "after" && k != "limit" && k != "stale":
			return store.ListOptions{}, fmt.Errorf("%w: unknown parameter %q (prefix, after, limit, stale)", store.ErrInvalid, k)
		case len(v) > 1:
			return store.ListOptions{}, fmt.Errorf("%w: %s given %d times", store.ErrInvalid, k, len(v))
		}
	}
	opts := store.ListOptions{Prefix: q.Get("prefix"), After: q.Get("after")}
	for name, v := range map[string]string{"prefix": opts.Prefix, "after": opts.After} {
		if err := listText(v); err != nil {
			return opts, fmt.Errorf("%w: %s: %v", store.ErrInvalid, name, err)
		}
	}
	if v := q.Get("limit"); q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || strconv.Itoa(n) != v {
			return opts, fmt.Errorf("%w: limit %q must be a positive number", store.ErrInvalid, v)
		}
		opts.Limit = n
	}
	return opts, nil
}

// listText checks a list cursor or prefix.
func listText(v string) error {
	if len(v) > store.MaxPathLen {
		return fmt.Errorf("longer than %d bytes", store.MaxPathLen)
	}
	if !utf8.ValidString(v) {
		return errors.New("not valid UTF-8")
	}
	if i := strings.IndexFunc(v, store.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return fmt.Errorf("control character %q", r)
	}
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if err := store.ValidKind(kind); err != nil {
		fail(w, err)
		return
	}
	opts, err := listOptions(r)
	if err != nil {
		fail(w, err)
		return
	}
	if !s.readHere(w, r) {
		return
	}
	page, err := s.node.Store().List(kind, opts)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// apply proposes cmd and returns its result, with the state error (not
// found, exists, conflict) as the error.
func (s *Server) apply(ctx context.Context, cmd *store.Command) (store.Result, error) {
	t0 := time.Now()
	res, err := s.node.Apply(ctx, cmd)
	if err != nil {
		return res, err
	}
	if s.onApply != nil {
		s.onApply(time.Since(t0))
	}
	return res, res.Err
}

// WriteResult is the answer to a successful write.
type WriteResult struct {
	Rev    uint64        `json:"rev"` // the Raft index of the write
	Object *store.Object `json:"object,omitempty"`
}

func (s *Server) writeObject(op store.Op) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := s.readJSONBody(w, r)
		if err != nil {
			fail(w, err)
			return
		}
		cmd := &store.Command{Op: op, Kind: r.PathValue("kind"), Key: r.PathValue("key")}
		if op != store.OpDelete {
			cmd.Value = body
		} else if len(bytes.TrimSpace(body)) > 0 {
			fail(w, fmt.Errorf("%w: DELETE takes no body", store.ErrInvalid))
			return
		}
		if cmd.IfRev, err = parseRev(r); err != nil {
			fail(w, err)
			return
		}
		if !s.validateAndRoute(w, r, cmd, body) {
			return
		}
		res, err := s.apply(r.Context(), cmd)
		if err != nil {
			fail(w, err)
			return
		}
		status := http.StatusOK
		if op == store.OpCreate {
			status = http.StatusCreated
		}
		if res.Object != nil {
			setObjectHeaders(w, res.Object)
		}
		writeJSON(w, status, WriteResult{Rev: res.Index, Object: res.Object})
	}
}

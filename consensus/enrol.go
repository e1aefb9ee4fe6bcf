package consensus

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/store"
)

// InitOptions are the cluster-wide settings chosen when a cluster is
// created; like DRP's first enroll, this is the only time they can be set.
type InitOptions struct {
	VirtAddr string `json:"virt_addr,omitempty"`
}

var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (n *Node) checkJoinable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return ErrShutdown
	case n.raft != nil || n.state.Valid:
		return ErrAlreadyInCluster
	case n.cfg.ConsensusAddr == "":
		return fmt.Errorf("--consensus-addr is required to form or join a cluster")
	case n.cfg.APIURL == "":
		return fmt.Errorf("--api-url is required to form or join a cluster")
	case !nodeIDRE.MatchString(n.cfg.NodeID):
		return fmt.Errorf("--node-id %q must be 1-64 letters, digits, '.', '_' or '-'", n.cfg.NodeID)
	}
	return nil
}

// backupOldData moves data left from an earlier life of this node (a store
// or a Raft log) aside, as DRP does when a node joins: the cluster's data
// replaces it.
func (n *Node) backupOldData() error {
	applied, _ := n.Store().Applied()
	_, rerr := os.Stat(n.raftDir())
	if applied == 0 && rerr != nil {
		return nil
	}
	dst := filepath.Join(n.cfg.DataDir, "backup-"+time.Now().UTC().Format("20060102T150405.000"))
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	if err := n.Store().Close(); err != nil {
		return err
	}
	for _, d := range []string{"store", "raft", "tls"} {
		if err := os.Rename(filepath.Join(n.cfg.DataDir, d), filepath.Join(dst, d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	n.logger.Warn("moved earlier data aside before joining", "to", dst)
	s, err := store.Open(filepath.Join(n.cfg.DataDir, "store"), n.logger)
	if err != nil {
		return err
	}
	n.st.Store(s) // the API may be reading the old one: it is closed, and answers so
	return nil
}

// Init makes this node a new one-node cluster: it generates the cluster ID,
// the cluster CA and the API token, bootstraps Raft and waits until it leads.
func (n *Node) Init(ctx context.Context, opts InitOptions) error {
	if err := n.checkJoinable(); err != nil {
		return err
	}
	if n.cfg.Observer {
		return fmt.Errorf("%w: an observer cannot form a cluster", ErrRefused)
	}
	if err := n.backupOldData(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	clusterID := newID()
	caCert, caKey, err := newCA(clusterID)
	if err != nil {
		return err
	}
	mat := &Material{CACertPEM: caCert, CAKeyPEM: caKey}
	if err := mat.parse(); err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if mat.NodeCertPEM, err = mat.issue(n.cfg.NodeID, pub); err != nil {
		return err
	}
	mat.NodeKeyPEM = marshalKey(priv)
	if err := mat.parse(); err != nil {
		return err
	}
	if err := mat.save(filepath.Join(n.cfg.DataDir, "tls")); err != nil {
		return err
	}
	apiToken := make([]byte, 24)
	if _, err := rand.Read(apiToken); err != nil {
		return err
	}
	n.mu.Lock()
	n.mat = mat
	n.state = &HAState{ConsensusID: n.cfg.NodeID, HaID: clusterID, ConsensusAddr: n.cfg.ConsensusAddr, ApiUrl: n.cfg.APIURL,
		VirtInterface: n.cfg.VirtInterface, VirtAddr: opts.VirtAddr, Token: hex.EncodeToString(apiToken)}
	n.mu.Unlock()
	boot := &raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID), Address: raft.ServerAddress(n.cfg.ConsensusAddr)}}}
	if err := n.start(boot); err != nil {
		return err
	}
	if err := n.waitLeader(ctx); err != nil {
		return err
	}
	if _, err := n.Apply(ctx, &store.Command{Op: store.OpMemberPut, Member: n.selfMember()}); err != nil {
		return fmt.Errorf("recording this member: %w", err)
	}
	return n.markValid()
}

func (n *Node) selfMember() *store.Member {
	return &store.Member{ID: n.cfg.NodeID, ConsensusAddr: n.cfg.ConsensusAddr, APIURL: n.cfg.APIURL,
		Observer: n.cfg.Observer, VirtInterface: n.cfg.VirtInterface, Joined: time.Now().Unix()}
}

func (n *Node) markValid() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.state.Valid = true
	if err := WriteHAState(n.cfg.DataDir, n.state); err != nil {
		return err
	}
	// The claim has served its purpose: the node now answers to the
	// cluster's tokens.
	n.bootstrapSecret = ""
	for _, f := range []string{BootstrapSecretFile, BootstrapCertFile} {
		if err := os.Remove(filepath.Join(n.cfg.DataDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.logger.Warn("could not remove the bootstrap secret", "file", f, "err", err)
		}
	}
	return nil
}

// BootstrapSecret is the secret that an unconfigured node's API requires
// (see BootstrapSecretFile), or "" once the node belongs to a cluster.
func (n *Node) BootstrapSecret() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bootstrapSecret
}

func (n *Node) waitLeader(ctx context.Context) error {
	r := n.r()
	for i := 0; ; i++ {
		if r.State() == raft.Leader {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for leadership: %w", ErrTimeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Token issues a join token valid for ttl.
func (n *Node) Token(ttl time.Duration) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mat == nil || !n.state.Valid {
		return "", ErrNotInCluster
	}
	if ttl <= 0 || ttl > 7*24*time.Hour {
		return "", fmt.Errorf("%w: token lifetime %v must be between 0 and 168h", ErrRefused, ttl)
	}
	return n.mat.newToken(n.state.HaID, ttl)
}

// JoinInfo is what a joining node learns, unauthenticated, from any member's
// API (client.JoinInfo): it checks the CA against the fingerprint in its
// token.
type JoinInfo = client.JoinInfo

// JoinInfo returns the cluster ID, CA certificate and leader address.
func (n *Node) JoinInfo(ctx context.Context) (*JoinInfo, error) {
	n.mu.Lock()
	mat, st := n.mat, n.state
	n.mu.Unlock()
	if mat == nil || !st.Valid {
		return nil, ErrNotInCluster
	}
	_, addr, err := n.Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &JoinInfo{ClusterID: st.HaID, CACert: string(mat.CACertPEM), LeaderAddr: addr}, nil
}

// joinRequest is what a joining node sends on the join stream.
type joinRequest struct {
	Token         string `json:"token"`
	NodeID        string `json:"node_id"`
	ConsensusAddr string `json:"consensus_addr"`
	APIURL        string `json:"api_url"`
	VirtInterface string `json:"virt_interface,omitempty"`
	Observer      bool   `json:"observer,omitempty"`
	PublicKey     []byte `json:"public_key,omitempty"`
}

type joinResponse struct {
	ClusterID string `json:"cluster_id"`
	NodeCert  string `json:"node_cert"`
}

// secretsResponse is what a member gets from /internal/secrets: what every
// member holds and no one else should.
type secretsResponse struct {
	CAKey    string `json:"ca_key"`
	APIToken string `json:"api_token"`
}

func (jr *joinRequest) validate() error {
	if !nodeIDRE.MatchString(jr.NodeID) {
		return fmt.Errorf("node_id %q must be 1-64 letters, digits, '.', '_' or '-'", jr.NodeID)
	}
	if _, _, err := net.SplitHostPort(jr.ConsensusAddr); err != nil {
		return fmt.Errorf("consensus_addr %q: %v", jr.ConsensusAddr, err)
	}
	if u, err := url.Parse(jr.APIURL); err != nil || u.Host == "" {
		return fmt.Errorf("api_url %q is not a URL", jr.APIURL)
	}
	return nil
}

// checkNewMember refuses an ID or address that another member already uses.
func (n *Node) checkNewMember(r *raft.Raft, id, addr string) error {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return translate(err)
	}
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == id && string(s.Address) != addr:
			return fmt.Errorf("%w: node ID %s is already a member at %s", ErrRefused, id, s.Address)
		case string(s.Address) == addr && string(s.ID) != id:
			return fmt.Errorf("%w: address %s already belongs to member %s", ErrRefused, addr, s.ID)
		}
	}
	return nil
}

// joinHandler serves the join stream: a node that holds a join token gets
// its member certificate and the cluster's secrets here.
func (n *Node) joinHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/join" {
			writeJSON(w, http.StatusNotFound, errorBody{Error: "not found", Code: "not_found"})
			return
		}
		var jr joinRequest
		body, err := readAllLimit(req.Body, 64<<10)
		if err == nil {
			err = store.CheckJSON(body)
		}
		if err == nil {
			err = json.Unmarshal(body, &jr)
		}
		if err == nil {
			err = jr.validate()
		}
		if err == nil && len(jr.PublicKey) != ed25519.PublicKeySize {
			err = errors.New("public_key must be a 32-byte ed25519 key")
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error(), Code: "bad_request"})
			return
		}
		n.mu.Lock()
		mat, st := n.mat, *n.state
		n.mu.Unlock()
		if err := mat.checkToken(jr.Token, st.HaID); err != nil {
			n.logger.Warn("refused join", "node", jr.NodeID, "err", err)
			writeJSON(w, http.StatusForbidden, errorBody{Error: err.Error(), Code: "bad_token"})
			return
		}
		r := n.r()
		if r.State() != raft.Leader {
			n.notLeader(w)
			return
		}
		if err := n.checkNewMember(r, jr.NodeID, jr.ConsensusAddr); err != nil {
			writeJSON(w, http.StatusConflict, errorBody{Error: err.Error(), Code: "conflict"})
			return
		}
		// A join token is good for one join: its use is committed before
		// the certificate is issued.
		claims, _ := ParseToken(jr.Token) // checkToken parsed it
		exp := uint64(claims.Expires)
		res, err := n.Apply(req.Context(), &store.Command{Op: store.OpJoinTokenUse, Key: claims.Nonce, IfRev: &exp})
		if err == nil {
			err = res.Err
		}
		if err != nil {
			if errors.Is(err, store.ErrExists) {
				n.logger.Warn("refused join: token used before", "node", jr.NodeID)
				writeJSON(w, http.StatusForbidden, errorBody{Error: "this join token was used already; get a new one with 'raftvip ha token'", Code: "bad_token"})
				return
			}
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: "unavailable"})
			return
		}
		cert, err := mat.issue(jr.NodeID, ed25519.PublicKey(jr.PublicKey))
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error(), Code: "internal"})
			return
		}
		n.logger.Info("issued member certificate", "node", jr.NodeID, "addr", jr.ConsensusAddr)
		// Only the certificate: the CA key and the API token go to members,
		// over the member channel, once the node is in the configuration.
		writeJSON(w, http.StatusOK, joinResponse{ClusterID: st.HaID, NodeCert: string(cert)})
	})
}

// Join makes this node a member of the cluster that issued token, reached
// through the API at joinURL. Data this node held before is moved aside.
func (n *Node) Join(ctx context.Context, joinURL, token string) error {
	if err := n.checkJoinable(); err != nil {
		return err
	}
	claims, err := ParseToken(token)
	if err != nil {
		return err
	}
	info, apiLeaf, err := fetchJoinInfo(ctx, joinURL)
	if err != nil {
		return err
	}
	if fp, err := fingerprintPEM([]byte(info.CACert)); err != nil || fp != claims.CAHash || info.ClusterID != claims.ClusterID {
		return fmt.Errorf("%w: %s does not serve the cluster this token is for (CA or cluster ID differ)", ErrBadToken, joinURL)
	}
	mat := &Material{CACertPEM: []byte(info.CACert)}
	if err := mat.parse(); err != nil {
		return err
	}
	if apiLeaf != nil {
		// The join info is checked by the token's CA hash; the API that
		// served it must be one of that CA's too.
		if _, err := apiLeaf.Verify(x509.VerifyOptions{Roots: mat.pool}); err != nil {
			return fmt.Errorf("%w: the API at %s presents a certificate that this cluster's CA did not sign: %v", ErrBadToken, joinURL, err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	jr := joinRequest{Token: token, NodeID: n.cfg.NodeID, ConsensusAddr: n.cfg.ConsensusAddr, APIURL: n.cfg.APIURL,
		VirtInterface: n.cfg.VirtInterface, Observer: n.cfg.Observer, PublicKey: pub}
	joinTLS := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: mat.pool, ServerName: memberServerName}
	var resp joinResponse
	leader := info.LeaderAddr
	if err := postFollowingLeader(ctx, newStreamClient(joinTLS, streamJoin), &leader, "/join", jr, &resp); err != nil {
		return fmt.Errorf("joining: %w", err)
	}
	if err := n.backupOldData(); err != nil {
		return fmt.Errorf("joining: %w", err)
	}
	mat.NodeCertPEM, mat.NodeKeyPEM = []byte(resp.NodeCert), marshalKey(priv)
	if err := mat.parse(); err != nil {
		return err
	}
	tlsDir := filepath.Join(n.cfg.DataDir, "tls")
	if err := mat.save(tlsDir); err != nil {
		return err
	}
	n.mu.Lock()
	n.mat = mat
	n.state = &HAState{ConsensusID: n.cfg.NodeID, HaID: resp.ClusterID, ConsensusAddr: n.cfg.ConsensusAddr, ApiUrl: n.cfg.APIURL,
		VirtInterface: n.cfg.VirtInterface, Observer: n.cfg.Observer}
	n.mu.Unlock()
	if err := n.start(nil); err != nil {
		return err
	}
	client, _ := n.RPCClient()
	add := n.selfMember()
	if err := postFollowingLeader(ctx, client, &leader, "/internal/add-voter", add, nil); err != nil {
		n.abandonJoin()
		os.RemoveAll(tlsDir)
		os.RemoveAll(n.raftDir())
		return fmt.Errorf("joining: adding this node to the cluster: %w", err)
	}
	// A member now: fetch what members share (the CA key, so that this node
	// can enrol others when it leads, and the API token).
	// This node is a voter from here on: finish even if the caller gives
	// up (an enroller that died takes its request's context with it), or
	// the node would be left a voter that is not in a cluster. Bounded by
	// fetchSecrets' tries and the node's life.
	fctx, cancel := context.WithTimeout(n.life, 2*time.Minute)
	defer cancel()
	var sec secretsResponse
	if err := n.fetchSecrets(fctx, leader, &sec); err != nil {
		return fmt.Errorf("joining: fetching the cluster's CA key and API token as a member: %w", err)
	}
	full := &Material{CACertPEM: mat.CACertPEM, CAKeyPEM: []byte(sec.CAKey), NodeCertPEM: mat.NodeCertPEM, NodeKeyPEM: mat.NodeKeyPEM}
	if err := full.parse(); err != nil {
		return fmt.Errorf("joining: the CA key from the cluster: %w", err)
	}
	st := HAState{ConsensusID: n.cfg.NodeID, HaID: resp.ClusterID, Token: sec.APIToken}
	if err := full.agrees(&st, tlsDir); err != nil {
		return fmt.Errorf("joining: %w", err)
	}
	if err := full.save(tlsDir); err != nil {
		return fmt.Errorf("joining: %w", err)
	}
	n.mu.Lock()
	n.mat = full // the running TLS configurations read the same certificate from n.nodeCert
	n.state.Token = sec.APIToken
	n.mu.Unlock()
	n.certMu.Lock() // the renewal loop runs already
	_, err = n.renewAPI(full)
	n.certMu.Unlock()
	if err != nil {
		// A member now: the renewal loop tries again (a node without an
		// API certificate of its own is due at once).
		n.logger.Warn("no API certificate yet", "err", err)
	}
	n.logger.Info("joined cluster", "cluster", resp.ClusterID, "node", n.cfg.NodeID)
	return n.markValid()
}

// fetchSecrets gets /internal/secrets from the member at addr, then from
// whichever member leads, retrying (up to 100 times, about 50 s, or until
// ctx ends): the configuration that names this node may take a moment to
// reach that member, and it may be gone.
func (n *Node) fetchSecrets(ctx context.Context, addr string, out *secretsResponse) error {
	var last error
	for attempt := 0; attempt < 100; attempt++ {
		if r := n.r(); r != nil && attempt > 0 {
			// Any member answers; the leader that added this node may
			// be gone.
			if a, _ := r.LeaderWithID(); a != "" {
				addr = string(a)
			}
		}
		last = n.getInternal(ctx, addr, "/internal/secrets", out)
		if last == nil {
			if out.CAKey == "" || out.APIToken == "" {
				return errors.New("a member answered without the CA key or the API token")
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ErrTimeout, last)
		case <-time.After(time.Duration(min(attempt+1, 10)) * 50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w (last error: %v)", ErrTimeout, last)
}

// abandonJoin stops Raft after a failed join, leaving the node unjoined.
func (n *Node) abandonJoin() {
	n.mu.Lock()
	r, trans, m, logs, servers := n.raft, n.trans, n.mux, n.logStore, n.servers
	n.raft, n.trans, n.mux, n.logStore, n.servers, n.client, n.bclient = nil, nil, nil, nil, nil, nil, nil
	n.state = &HAState{}
	n.mu.Unlock()
	if r != nil {
		r.Shutdown().Error()
	}
	for _, s := range servers {
		s.Close()
	}
	if trans != nil {
		trans.Close()
	}
	if m != nil {
		m.close()
	}
	if logs != nil {
		logs.Close()
	}
}

// fetchJoinInfo reads a member's public join info, and the API
// certificate it was served with (nil over plain HTTP). The certificate is
// not verified here: the caller checks the answer against its token and
// then the certificate against the CA the answer holds.
func fetchJoinInfo(ctx context.Context, joinURL string) (*JoinInfo, *x509.Certificate, error) {
	var leaf atomic.Pointer[x509.Certificate]
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 {
				leaf.Store(cs.PeerCertificates[0])
			}
			return nil
		}}}
	defer tr.CloseIdleConnections()
	c, err := client.New(joinURL, "", &http.Client{Timeout: 10 * time.Second, Transport: tr})
	if err != nil {
		return nil, nil, fmt.Errorf("join URL: %w", err)
	}
	var info JoinInfo
	if _, err := c.Do(ctx, http.MethodGet, client.HAJoinInfo, nil, &info); err != nil {
		return nil, nil, fmt.Errorf("join info from %s: %w", joinURL, err)
	}
	return &info, leaf.Load(), nil
}

// addVoter runs on the leader for a node that holds a member certificate.
func (n *Node) addVoter(ctx context.Context, m *store.Member) error {
	r := n.r()
	if r.State() != raft.Leader {
		return ErrNotLeader
	}
	if err := n.checkNewMember(r, m.ID, m.ConsensusAddr); err != nil {
		return err
	}
	if err := r.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.ConsensusAddr), 0, 30*time.Second).Error(); err != nil {
		return translate(err)
	}
	m.Joined = time.Now().Unix()
	if _, err := n.Apply(ctx, &store.Command{Op: store.OpMemberPut, Member: m}); err != nil {
		return err
	}
	n.logger.Info("member added", "node", m.ID, "addr", m.ConsensusAddr, "observer", m.Observer)
	return nil
}

// reconcileMembers runs on a new leader: a member record whose server is no
// longer in the Raft configuration is what a removal left when leadership
// changed between its two steps (the configuration change, then the
// record); it is deleted, so that the member list and ha status agree with
// Raft. (A server without a record is a join under way, and is left alone.)
func (n *Node) reconcileMembers(ctx context.Context, r *raft.Raft) {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	in := map[string]bool{}
	for _, s := range f.Configuration().Servers {
		in[string(s.ID)] = true
	}
	for id := range n.memberMap() {
		if in[id] {
			continue
		}
		if _, err := n.Apply(ctx, &store.Command{Op: store.OpMemberDelete, Member: &store.Member{ID: id}}); err != nil {
			n.logger.Warn("removing the record of a member that is no longer in the cluster", "node", id, "err", err)
			return
		}
		n.logger.Info("member record removed: the member had left the Raft configuration", "node", id)
	}
}

// Remove takes a passive member out of the cluster, by ID or consensus
// address. The active node cannot be removed: transfer leadership first.
func (n *Node) Remove(ctx context.Context, target string) error {
	r := n.r()
	if r == nil {
		return ErrNotInCluster
	}
	if r.State() != raft.Leader {
		return ErrNotLeader
	}
	s, err := n.findServer(r, target)
	if errors.Is(err, ErrUnknownMember) {
		// Out of the Raft configuration but still on the member list: an
		// earlier removal whose second step (the record) was lost with a
		// leadership change. Finish it.
		for _, m := range n.memberMap() {
			if m.ID == target || m.ConsensusAddr == target {
				if _, err := n.Apply(ctx, &store.Command{Op: store.OpMemberDelete, Member: &store.Member{ID: m.ID}}); err != nil {
					return err
				}
				n.logger.Info("member record removed: an earlier removal had left it", "node", m.ID)
				return nil
			}
		}
	}
	if err != nil {
		return err
	}
	if string(s.ID) == n.cfg.NodeID {
		return fmt.Errorf("%w: %s is the active node; run 'raftvip ha transfer' first, then remove it from the new active node", ErrRefused, s.ID)
	}
	if err := r.RemoveServer(s.ID, 0, 30*time.Second).Error(); err != nil {
		return translate(err)
	}
	if _, err := n.Apply(ctx, &store.Command{Op: store.OpMemberDelete, Member: &store.Member{ID: string(s.ID)}}); err != nil {
		return err
	}
	n.logger.Info("member removed", "node", s.ID, "addr", s.Address)
	return nil
}

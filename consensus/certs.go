package consensus

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// APIServerName is the DNS name every API certificate issued by a cluster CA
// carries, besides the node's own names: a client that trusts the cluster
// CA accepts any member's API under it, whatever address it dialled (a
// VIP, a load balancer, a NAT), as members accept each other under
// memberServerName.
const APIServerName = "raftvip-api"

// Certificate lifetimes and renewal. Each member holds the CA key and
// renews its own certificates; a certificate is renewed once less than a
// third of its lifetime is left (about four months of a member
// certificate, a month of an API certificate), checked every
// certCheckEvery. Variables for tests.
var (
	apiLifetime    = 90 * 24 * time.Hour
	certCheckEvery = time.Hour
)

// Files of the API's TLS identity: in tls/ once the node is in a cluster,
// and the bootstrap certificate (with its key) in the data dir before.
const (
	fileAPICert = "api.crt"
	fileAPIKey  = "api.key"
	// BootstrapCertFile holds the self-signed certificate (and key) an
	// unconfigured node's API presents; the bootstrap secret carries its
	// fingerprint, so that whoever holds the secret can tell the node
	// from an impostor. Removed with the secret once the node is in a
	// cluster.
	BootstrapCertFile = "bootstrap-api.pem"
)

// bootstrapPrefix starts every bootstrap secret: rvb1.<secret>.<pin>, the
// pin being the hex SHA-256 of the bootstrap certificate's DER bytes.
const bootstrapPrefix = "rvb1"

// BootstrapPin returns the certificate fingerprint a bootstrap secret
// carries, or "" if s is not one.
func BootstrapPin(s string) string {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != bootstrapPrefix || len(parts[1]) != 64 || len(parts[2]) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(parts[2]); err != nil {
		return ""
	}
	return parts[2]
}

// certSlot holds a certificate that can be replaced while listeners and
// clients use it: each new handshake reads the current one.
type certSlot struct {
	p atomic.Pointer[tls.Certificate]
}

func (s *certSlot) get() (*tls.Certificate, error) {
	c := s.p.Load()
	if c == nil {
		return nil, errors.New("no certificate yet")
	}
	return c, nil
}

func (s *certSlot) set(c tls.Certificate) {
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	s.p.Store(&c)
}

func (s *certSlot) leaf() *x509.Certificate {
	if c := s.p.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// ensureBootstrapIdentity reads (or, at first start, makes) the bootstrap
// certificate and the secret that names it. A secret that does not match
// the certificate, or a missing certificate, makes both anew.
func ensureBootstrapIdentity(dir, nodeID string) (string, tls.Certificate, error) {
	sp, cp := filepath.Join(dir, BootstrapSecretFile), filepath.Join(dir, BootstrapCertFile)
	sb, serr := os.ReadFile(sp)
	cb, cerr := os.ReadFile(cp)
	if serr == nil && cerr == nil {
		s := strings.TrimSpace(string(sb))
		c, err := tls.X509KeyPair(cb, cb)
		if err == nil && BootstrapPin(s) != "" {
			if sum := sha256.Sum256(c.Certificate[0]); hex.EncodeToString(sum[:]) == BootstrapPin(s) {
				return s, c, nil
			}
		}
		if BootstrapPin(s) == "" {
			return "", tls.Certificate{}, fmt.Errorf("%s is not a bootstrap secret (rvb1.<secret>.<pin>); remove it and %s and restart to make new ones", sp, BootstrapCertFile)
		}
		return "", tls.Certificate{}, fmt.Errorf("%s does not name the certificate in %s; remove both and restart to make new ones", sp, cp)
	}
	for _, err := range []error{serr, cerr} {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", tls.Certificate{}, err
		}
	}
	certPEM, keyPEM, err := newKeyAndCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "raftvip bootstrap " + nodeID},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caLifetime, nil, nil)
	if err != nil {
		return "", tls.Certificate{}, err
	}
	pemBytes := append(certPEM, keyPEM...)
	blk, _ := pem.Decode(certPEM)
	sum := sha256.Sum256(blk.Bytes)
	s := bootstrapPrefix + "." + newSecret() + "." + hex.EncodeToString(sum[:])
	if err := writeFileAtomic(cp, pemBytes, 0o600); err != nil {
		return "", tls.Certificate{}, err
	}
	if err := writeFileAtomic(sp, []byte(s+"\n"), 0o600); err != nil {
		return "", tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(pemBytes, pemBytes)
	return s, c, err
}

// apiNames splits the configured API hosts into DNS names and addresses,
// always with localhost and APIServerName.
func (n *Node) apiNames() (dns []string, ips []net.IP) {
	dns = []string{APIServerName, "localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range n.cfg.APIHosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if h != "" && !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// issueAPI signs an API certificate for this node's names.
func (m *Material) issueAPI(nodeID string, dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	if m.caKey == nil {
		return nil, nil, fmt.Errorf("%w: this node does not hold the CA key yet", ErrNotInCluster)
	}
	certPEM, keyPEM, err = newKeyAndCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: nodeID + " API", OrganizationalUnit: m.caCert.Subject.OrganizationalUnit},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, apiLifetime, m.caCert, m.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issuing the API certificate: %w", err)
	}
	return certPEM, keyPEM, nil
}

// needsRenewal says whether c has less than a third of its lifetime left.
func needsRenewal(c *x509.Certificate, now time.Time) bool {
	if c == nil {
		return true
	}
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < life/3
}

// coversNames says whether c was issued for all of dns and ips.
func coversNames(c *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, d := range dns {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// loadAPICert puts the API certificate in tls/ into the slot if it is this
// cluster's, covers this node's names and is not due for renewal; otherwise
// it issues a new one (if this node holds the CA key).
func (n *Node) loadAPICert(mat *Material) error {
	dir := filepath.Join(n.cfg.DataDir, "tls")
	dns, ips := n.apiNames()
	cb, err1 := os.ReadFile(filepath.Join(dir, fileAPICert))
	kb, err2 := os.ReadFile(filepath.Join(dir, fileAPIKey))
	if err1 == nil && err2 == nil {
		if c, err := tls.X509KeyPair(cb, kb); err == nil {
			leaf, _ := x509.ParseCertificate(c.Certificate[0])
			if leaf != nil && coversNames(leaf, dns, ips) && !needsRenewal(leaf, time.Now()) {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: mat.pool}); err == nil {
					n.apiCert.set(c)
					return nil
				}
			}
		}
	}
	if mat.caKey == nil {
		return nil // a joining node, until it has the CA key
	}
	_, err := n.renewAPI(mat)
	return err
}

// renewAPI issues, saves and installs a new API certificate.
func (n *Node) renewAPI(mat *Material) (*x509.Certificate, error) {
	dns, ips := n.apiNames()
	certPEM, keyPEM, err := mat.issueAPI(n.cfg.NodeID, dns, ips)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(n.cfg.DataDir, "tls")
	// The key first: a crash between the two leaves a pair that does not
	// match, which loadAPICert replaces at the next start.
	if err := writeFileAtomic(filepath.Join(dir, fileAPIKey), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, fileAPICert), certPEM, 0o600); err != nil {
		return nil, err
	}
	n.apiCert.set(c)
	return n.apiCert.leaf(), nil
}

// renewMember issues this node a new member certificate (a new key, the
// same name), saves it and installs it for new connections.
func (n *Node) renewMember() (*x509.Certificate, error) {
	n.mu.Lock()
	mat := n.mat
	n.mu.Unlock()
	if mat == nil || mat.caKey == nil {
		return nil, fmt.Errorf("%w: this node does not hold the CA key", ErrNotInCluster)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	certPEM, err := mat.issue(n.cfg.NodeID, pub)
	if err != nil {
		return nil, err
	}
	next := &Material{CACertPEM: mat.CACertPEM, CAKeyPEM: mat.CAKeyPEM, NodeCertPEM: certPEM, NodeKeyPEM: marshalKey(priv)}
	if err := next.parse(); err != nil {
		return nil, err
	}
	if err := next.save(filepath.Join(n.cfg.DataDir, "tls")); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.mat = next
	n.mu.Unlock()
	n.nodeCert.set(next.nodeTLS)
	return n.nodeCert.leaf(), nil
}

// APICertificate is the certificate the client API presents (for
// tls.Config.GetCertificate): before the node is in a cluster its
// bootstrap certificate, after it one signed by the cluster CA.
func (n *Node) APICertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := n.apiCert.p.Load(); c != nil && n.HAState().Valid {
		return c, nil
	}
	return n.bootCert.get()
}

// CertInfo describes one certificate a node holds.
type CertInfo struct {
	Node     string    `json:"node"`
	Kind     string    `json:"kind"` // "member" or "api"
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Renewed  bool      `json:"renewed,omitempty"`
	Error    string    `json:"error,omitempty"`
}

func certInfo(node, kind string, c *x509.Certificate, renewed bool) CertInfo {
	ci := CertInfo{Node: node, Kind: kind, Renewed: renewed}
	if c != nil {
		ci.Serial, ci.NotAfter = c.SerialNumber.Text(16), c.NotAfter.UTC()
	}
	return ci
}

// Certificates describes this node's member and API certificates.
func (n *Node) Certificates() []CertInfo {
	return []CertInfo{certInfo(n.cfg.NodeID, "member", n.nodeCert.leaf(), false), certInfo(n.cfg.NodeID, "api", n.apiCert.leaf(), false)}
}

// RotateCerts gives this node a new member certificate and a new API
// certificate now. Connections already open keep the certificates they
// were made with; new ones use the new certificates, so nothing stops.
func (n *Node) RotateCerts() ([]CertInfo, error) {
	n.certMu.Lock()
	defer n.certMu.Unlock()
	if !n.HAState().Valid {
		return nil, ErrNotInCluster
	}
	m, err := n.renewMember()
	if err != nil {
		return nil, fmt.Errorf("renewing the member certificate: %w", err)
	}
	n.mu.Lock()
	mat := n.mat
	n.mu.Unlock()
	a, err := n.renewAPI(mat)
	if err != nil {
		return nil, fmt.Errorf("renewing the API certificate: %w", err)
	}
	n.logger.Info("certificates rotated", "member_not_after", m.NotAfter.UTC(), "api_not_after", a.NotAfter.UTC())
	return []CertInfo{certInfo(n.cfg.NodeID, "member", m, true), certInfo(n.cfg.NodeID, "api", a, true)}, nil
}

// RotateClusterCerts rotates this node's certificates and then every other
// member's, one at a time, and reports each; a member that cannot be
// reached is reported with its error.
func (n *Node) RotateClusterCerts(ctx context.Context) ([]CertInfo, error) {
	out, err := n.RotateCerts()
	if err != nil {
		return nil, err
	}
	r := n.r()
	if r == nil {
		return out, nil
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return out, translate(err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		var got []CertInfo
		if err := n.callInternal(ctx, "POST", string(s.Address), "/internal/rotate-certs", &got); err != nil {
			out = append(out, CertInfo{Node: string(s.ID), Kind: "member", Error: err.Error()})
			continue
		}
		out = append(out, got...)
	}
	return out, nil
}

// renewCerts renews this node's certificates that are due, every
// certCheckEvery, until the node stops.
func (n *Node) renewCerts() {
	defer n.wg.Done()
	t := time.NewTicker(certCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		n.renewDue()
	}
}

func (n *Node) renewDue() {
	n.certMu.Lock()
	defer n.certMu.Unlock()
	n.mu.Lock()
	mat, valid := n.mat, n.state.Valid
	n.mu.Unlock()
	if !valid || mat == nil || mat.caKey == nil {
		return
	}
	now := time.Now()
	if needsRenewal(n.nodeCert.leaf(), now) {
		if c, err := n.renewMember(); err != nil {
			n.logger.Warn("renewing the member certificate", "err", err)
		} else {
			n.logger.Info("member certificate renewed", "not_after", c.NotAfter.UTC())
		}
		n.mu.Lock()
		mat = n.mat
		n.mu.Unlock()
	}
	if needsRenewal(n.apiCert.leaf(), now) {
		if c, err := n.renewAPI(mat); err != nil {
			n.logger.Warn("renewing the API certificate", "err", err)
		} else {
			n.logger.Info("API certificate renewed", "not_after", c.NotAfter.UTC())
		}
	}
}

// APITrust says which certificates a client of the API accepts.
type APITrust struct {
	// Roots verify the chain; nil means the system's roots.
	Roots *x509.CertPool
	// ClusterCA says Roots is a raftvip cluster CA: a certificate it
	// issued for APIServerName is accepted whatever name was dialled.
	ClusterCA bool
	// Pin, if set, is the hex SHA-256 of a certificate accepted as it is
	// (an unconfigured node's bootstrap certificate, from its secret).
	Pin string
}

// Transport is an HTTP transport whose connections verify the API as t
// says; dial (nil: an ordinary dialer) makes the TCP connections.
func (t APITrust) Transport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if dial != nil {
		tr.DialContext = dial
	} else {
		dial = tr.DialContext
	}
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(addr)
		c := tls.Client(raw, t.ForHost(host))
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
	return tr
}

// ForHost is a client configuration for the API at host that verifies
// its certificate as t says: the host name (or address) dialled, unless
// ClusterCA accepts the certificate under APIServerName. (crypto/tls does
// not tell a VerifyConnection callback which address was dialled, hence
// the host here.)
func (t APITrust) ForHost(host string) *tls.Config {
	return &tls.Config{
		ServerName: host,
		MinVersion: tls.VersionTLS12,
		// Verification is done by VerifyConnection below, which knows
		// pins and the cluster's API name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the API presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			if t.Pin != "" {
				sum := sha256.Sum256(leaf.Raw)
				if hex.EncodeToString(sum[:]) == t.Pin {
					return nil
				}
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			opts := x509.VerifyOptions{Roots: t.Roots, Intermediates: inter, DNSName: host}
			err := errors.New("no server name to check the certificate against")
			if host != "" {
				_, err = leaf.Verify(opts)
			}
			if err != nil && t.ClusterCA && slices.Contains(leaf.DNSNames, APIServerName) {
				opts.DNSName = APIServerName
				_, err = leaf.Verify(opts)
			}
			if err != nil {
				if t.Pin != "" && t.Roots == nil {
					return fmt.Errorf("the API's certificate is not the one its bootstrap secret names (%s…): %w", t.Pin[:12], err)
				}
				return fmt.Errorf("the API's certificate is not trusted (%w); trust the cluster CA (its tls/ca.crt, given with --ca or found in --data-dir)", err)
			}
			return nil
		},
	}
}

// ReadCA reads a PEM file of CA certificates into a pool, and says whether
// one of them is a raftvip cluster CA.
func ReadCA(path string) (*x509.CertPool, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	pool := x509.NewCertPool()
	cluster, n := false, 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		pool.AddCert(c)
		n++
		if c.IsCA && c.Subject.CommonName == "raftvip cluster CA" {
			cluster = true
		}
	}
	if n == 0 {
		return nil, false, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, cluster, nil
}

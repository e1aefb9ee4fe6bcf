package consensus

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/raftvip/raftvip/store"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// memberServerName is the DNS name every member certificate carries and every
// member verifies: members are identified by the cluster CA, not by address,
// so that a node can change address without new certificates.
const memberServerName = "raftvip-member"

// Certificate lifetimes (nodeLifetime a variable for tests; see also
// apiLifetime).
const caLifetime = 10 * 365 * 24 * time.Hour

var nodeLifetime = 365 * 24 * time.Hour

// Material is a node's TLS identity: the cluster CA (with its key, which
// every member holds so that any leader can admit new members) and the node's
// own certificate.
type Material struct {
	CACertPEM   []byte
	CAKeyPEM    []byte
	NodeCertPEM []byte
	NodeKeyPEM  []byte

	caCert  *x509.Certificate
	caKey   ed25519.PrivateKey
	pool    *x509.CertPool
	nodeTLS tls.Certificate
}

const (
	fileCACert   = "ca.crt"
	fileCAKey    = "ca.key"
	fileNodeCert = "node.crt"
	fileNodeKey  = "node.key"
)

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func marshalKey(k ed25519.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // ed25519 keys always marshal
	}
	return pemBlock("PRIVATE KEY", der)
}

// newKeyAndCert makes a new ed25519 key and a certificate for it from tmpl
// (given a new serial, valid from an hour ago for clock skew, for
// lifetime), signed by parent's key, or self-signed if parent is nil.
func newKeyAndCert(tmpl *x509.Certificate, lifetime time.Duration, parent *x509.Certificate, parentKey ed25519.PrivateKey) (certPEM, keyPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = newSerial(), now.Add(-time.Hour), now.Add(lifetime)
	if parent == nil {
		parent, parentKey = tmpl, priv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), marshalKey(priv), nil
}

// newCA makes a fresh self-signed ed25519 cluster CA.
func newCA(clusterID string) (certPEM, keyPEM []byte, err error) {
	return newKeyAndCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "raftvip cluster CA", OrganizationalUnit: []string{clusterID}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, caLifetime, nil, nil)
}

// issue signs a member certificate for nodeID's public key.
func (m *Material) issue(nodeID string, pub ed25519.PublicKey) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: m.caCert.Subject.OrganizationalUnit},
		DNSNames:     []string{memberServerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.caCert, pub, m.caKey)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate for %s: %w", nodeID, err)
	}
	return pemBlock("CERTIFICATE", der), nil
}

// parse fills the derived fields from the PEM fields.
func (m *Material) parse() error {
	b, _ := pem.Decode(m.CACertPEM)
	if b == nil {
		return fmt.Errorf("%w: CA certificate (%s) is not PEM", ErrBadTLS, fileCACert)
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("%w: CA certificate (%s): %v", ErrBadTLS, fileCACert, err)
	}
	m.caCert = ca
	m.pool = x509.NewCertPool()
	m.pool.AddCert(ca)
	if len(m.CAKeyPEM) > 0 {
		kb, _ := pem.Decode(m.CAKeyPEM)
		if kb == nil {
			return fmt.Errorf("%w: CA key (%s) is not PEM", ErrBadTLS, fileCAKey)
		}
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return fmt.Errorf("%w: CA key (%s): %v", ErrBadTLS, fileCAKey, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return fmt.Errorf("%w: CA key (%s) is not ed25519", ErrBadTLS, fileCAKey)
		}
		m.caKey = ek
	}
	if len(m.NodeCertPEM) > 0 {
		c, err := tls.X509KeyPair(m.NodeCertPEM, m.NodeKeyPEM)
		if err != nil {
			return fmt.Errorf("%w: node certificate (%s) and key (%s): %v", ErrBadTLS, fileNodeCert, fileNodeKey, err)
		}
		m.nodeTLS = c
	}
	return nil
}

// CAFingerprint is the hex SHA-256 of the CA certificate's DER bytes; join
// tokens carry it so that a joining node can authenticate the cluster.
func (m *Material) CAFingerprint() string {
	sum := sha256.Sum256(m.caCert.Raw)
	return hex.EncodeToString(sum[:])
}

func fingerprintPEM(certPEM []byte) (string, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return "", fmt.Errorf("%w: not a PEM certificate", ErrBadTLS)
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

func loadMaterial(dir string) (*Material, error) {
	m := &Material{}
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{fileCACert, &m.CACertPEM}, {fileCAKey, &m.CAKeyPEM}, {fileNodeCert, &m.NodeCertPEM}, {fileNodeKey, &m.NodeKeyPEM}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, fmt.Errorf("reading TLS material: %w", err)
		}
		*f.dst = b
	}
	return m, m.parse()
}

func (m *Material) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{fileCACert, m.CACertPEM}, {fileCAKey, m.CAKeyPEM}, {fileNodeCert, m.NodeCertPEM}, {fileNodeKey, m.NodeKeyPEM}} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return fmt.Errorf("writing TLS material: %w", err)
		}
	}
	return nil
}

// serverTLS accepts members (verified client certificate) and, for the join
// stream only, clients without a certificate.
// The certificate is read from cert at each handshake, so that a renewed
// one is used without a restart.
func (m *Material) serverTLS(cert *certSlot) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.get() },
		ClientCAs:      m.pool,
		ClientAuth:     tls.VerifyClientCertIfGiven,
	}
}

// clientTLS presents this node's certificate and trusts only the cluster CA.
// (The certificate is read from cert at each handshake.)
func (m *Material) clientTLS(cert *certSlot) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert.get() },
		RootCAs:              m.pool,
		ServerName:           memberServerName,
	}
}

// Join tokens: "rvj1.<payload>.<mac>", payload base64url JSON, mac an
// HMAC-SHA256 of the payload under a key derived from the CA key. Any member
// can issue and check tokens; the payload alone tells a joining node which
// cluster and which CA to expect.
const tokenPrefix = "rvj1"

// TokenClaims is what a join token says.
type TokenClaims struct {
	ClusterID string `json:"c"`
	CAHash    string `json:"h"`
	Expires   int64  `json:"e"`
	Nonce     string `json:"n"`
}

func (m *Material) tokenKey() []byte {
	mac := hmac.New(sha256.New, m.caKey.Seed())
	mac.Write([]byte("raftvip join token v1"))
	return mac.Sum(nil)
}

func (m *Material) newToken(clusterID string, ttl time.Duration) (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	payload, _ := json.Marshal(TokenClaims{ClusterID: clusterID, CAHash: m.CAFingerprint(), Expires: time.Now().Add(ttl).Unix(), Nonce: hex.EncodeToString(nonce)})
	p := base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, m.tokenKey())
	mac.Write([]byte(p))
	return tokenPrefix + "." + p + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// ParseToken reads a token's claims without checking its MAC (only members
// can); a joining node uses the claims to authenticate the cluster.
func ParseToken(tok string) (*TokenClaims, error) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return nil, fmt.Errorf("%w: not a raftvip join token", ErrBadToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	var c TokenClaims
	if store.CheckJSON(raw) != nil || json.Unmarshal(raw, &c) != nil || c.ClusterID == "" || c.CAHash == "" {
		return nil, fmt.Errorf("%w: malformed claims", ErrBadToken)
	}
	return &c, nil
}

func (m *Material) checkToken(tok, clusterID string) error {
	c, err := ParseToken(tok)
	if err != nil {
		return err
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	want := hmac.New(sha256.New, m.tokenKey())
	want.Write([]byte(parts[1]))
	got, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(got, want.Sum(nil)) {
		return fmt.Errorf("%w: signature does not match this cluster", ErrBadToken)
	}
	if c.ClusterID != clusterID {
		return fmt.Errorf("%w: token is for cluster %s, this is %s", ErrBadToken, c.ClusterID, clusterID)
	}
	if time.Now().Unix() > c.Expires {
		return fmt.Errorf("%w: token expired at %s", ErrBadToken, time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// agrees checks that the TLS material and ha-state.json describe the same
// node of the same cluster, and names the file that disagrees: the CA is
// the cluster's (its OU is HaID), the CA key is the CA's, and the node
// certificate was signed by that CA for this node (its CN is ConsensusID).
func (m *Material) agrees(st *HAState, dir string) error {
	bad := func(file, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s; ha-state.json and tls/ disagree, so this data dir is not one node's (restore the node's own files, or start it afresh with an empty data dir and enroll it)",
			ErrInconsistent, filepath.Join(dir, file), fmt.Sprintf(format, args...))
	}
	if ou := m.caCert.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != st.HaID {
		return bad(fileCACert, "the CA is cluster %v's, ha-state.json names cluster %q", ou, st.HaID)
	}
	if m.caKey != nil {
		pub, ok := m.caCert.PublicKey.(ed25519.PublicKey)
		if !ok || !pub.Equal(m.caKey.Public()) {
			return bad(fileCAKey, "the key does not belong to %s", fileCACert)
		}
	}
	leaf := m.nodeTLS.Leaf
	if leaf == nil && len(m.nodeTLS.Certificate) > 0 {
		var err error
		if leaf, err = x509.ParseCertificate(m.nodeTLS.Certificate[0]); err != nil {
			return bad(fileNodeCert, "%v", err)
		}
	}
	if leaf == nil {
		return bad(fileNodeCert, "no certificate")
	}
	// The chain, checked at a moment the certificate was valid: expiry is
	// not disagreement.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.pool, CurrentTime: leaf.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return bad(fileNodeCert, "not signed by this cluster's CA (%v)", err)
	}
	if leaf.Subject.CommonName != st.ConsensusID {
		return bad(fileNodeCert, "the certificate is node %q's, ha-state.json's ConsensusID is %q", leaf.Subject.CommonName, st.ConsensusID)
	}
	return nil
}

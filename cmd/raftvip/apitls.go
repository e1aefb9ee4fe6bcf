package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/raftvip/raftvip/consensus"
)

// userCert is the user's own API certificate (--api-cert, --api-key),
// read again when either file changes (checked at most every few seconds),
// so that a renewed certificate is served without a restart.
type userCert struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     [2]time.Time
	checked time.Time
}

func newUserCert(certFile, keyFile string) (*userCert, error) {
	u := &userCert{certFile: certFile, keyFile: keyFile}
	if _, err := u.get(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *userCert) get() (*tls.Certificate, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cert != nil && time.Since(u.checked) < 5*time.Second {
		return u.cert, nil
	}
	u.checked = time.Now()
	var mod [2]time.Time
	for i, f := range []string{u.certFile, u.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			if u.cert != nil {
				return u.cert, nil // keep serving the one we have
			}
			return nil, fmt.Errorf("--api-cert / --api-key: %w", err)
		}
		mod[i] = fi.ModTime()
	}
	if u.cert != nil && mod == u.mod {
		return u.cert, nil
	}
	c, err := tls.LoadX509KeyPair(u.certFile, u.keyFile)
	if err != nil {
		if u.cert != nil {
			return u.cert, nil // a half-written renewal: try again later
		}
		return nil, fmt.Errorf("--api-cert %s, --api-key %s: %w", u.certFile, u.keyFile, err)
	}
	u.cert, u.mod = &c, mod
	return u.cert, nil
}

// apiTLSConfig is the API listener's TLS configuration. Before the node is
// in a cluster it presents its bootstrap certificate (named by its
// bootstrap secret); after, the user's certificate if given, else the one
// the cluster CA issued it.
func apiTLSConfig(node *consensus.Node, user *userCert) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12, // load balancers and curl builds that lack 1.3
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if user != nil && node.HAState().Valid {
				return user.get()
			}
			return node.APICertificate(hello)
		},
	}
}

// apiHosts are the names the cluster-issued API certificate is for: the
// host of --api-addr (unless it is every address), of --api-url, and the
// VIPs.
func (o *agentOptions) apiHosts(apiURL string) []string {
	var out []string
	if h, _, err := net.SplitHostPort(o.apiAddr); err == nil && h != "" {
		out = append(out, h)
	}
	if u, err := url.Parse(apiURL); err == nil && u.Hostname() != "" {
		out = append(out, u.Hostname())
	}
	for _, v := range o.vips {
		if ip, _, err := net.ParseCIDR(v); err == nil {
			out = append(out, ip.String())
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, h)
	}
	return out
}

// checkAPITLSFlags checks the API's TLS flags together.
func (o *agentOptions) checkAPITLSFlags() error {
	switch {
	case (o.apiCert == "") != (o.apiKey == ""):
		return errors.New("--api-cert and --api-key go together")
	case o.apiPlain && o.apiCert != "":
		return errors.New("--api-plain and --api-cert exclude each other: serve the API in plain HTTP or with that certificate")
	}
	return nil
}

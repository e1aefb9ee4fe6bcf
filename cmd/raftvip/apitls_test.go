package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// userPKI is a CA of the user's own and a way to issue server
// certificates for 127.0.0.1 from it.
type userPKI struct {
	ca    *x509.Certificate
	key   ed25519.PrivateKey
	caPEM string // file
}

func newUserPKI(t *testing.T) *userPKI {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example corp CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := filepath.Join(t.TempDir(), "corp-ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &userPKI{ca: ca, key: priv, caPEM: p}
}

// issue writes a certificate for 127.0.0.1 with the given serial and its
// key to certFile and keyFile.
func (u *userPKI) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "raftvip.example"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, u.ca, pub, u.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(priv)
	// Key first, then certificate, each replaced whole (as a renewal tool
	// would write them).
	for _, f := range []struct {
		path string
		blk  *pem.Block
	}{{keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: kder}}, {certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der}}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(f.blk), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial is the serial of the certificate the API at addr presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestUserAPICertificate: with --api-cert/--api-key the API presents the
// user's certificate, verified by the user's CA (--ca) and refused by the
// cluster CA alone; a renewed certificate is served without a restart; and
// --api-plain serves plain HTTP with a warning.
func TestUserAPICertificate(t *testing.T) {
	pki := newUserPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	pki.issue(t, 1001, certFile, keyFile)
	a := &agent{id: "u1", dir: filepath.Join(dir, "data"), api: freePort(t), cons: freePort(t)}
	startAgent(t, a, "--bootstrap", "--api-cert", certFile, "--api-key", keyFile)
	t.Cleanup(a.kill)
	ep := []string{"-E", "https://" + a.api, "--data-dir", "/nonexistent", "--ca", pki.caPEM}
	eventually(t, 20*time.Second, "u1", append([]string{"ha", "id"}, ep...)...)
	if s := servedSerial(t, a.api); s != 1001 {
		t.Fatalf("the API presents serial %d, want the user's 1001", s)
	}
	if _, errOut, code := run(t, "ha", "id", "-E", "https://"+a.api, "--data-dir", a.dir); code == 0 || !strings.Contains(errOut, "not trusted") {
		t.Fatalf("the user's certificate checked against the cluster CA: exit %d %q, want refused", code, errOut)
	}
	// A renewal of the files is served within seconds, no restart.
	pki.issue(t, 1002, certFile, keyFile)
	deadline := time.Now().Add(20 * time.Second)
	for servedSerial(t, a.api) != 1002 {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not served within 20 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	eventually(t, 10*time.Second, "u1", append([]string{"ha", "id"}, ep...)...)
	a.term(t)

	// Plain HTTP only when asked for, with a warning.
	p := &agent{id: "p1", dir: filepath.Join(dir, "plain"), api: freePort(t), cons: freePort(t)}
	startAgent(t, p, "--bootstrap", "--api-plain")
	t.Cleanup(p.kill)
	eventually(t, 20*time.Second, "p1", "ha", "id", "-E", "http://"+p.api, "--data-dir", p.dir)
	if !strings.Contains(p.log.String(), "plain HTTP") {
		t.Fatalf("no warning for --api-plain:\n%s", p.log)
	}
	for _, bad := range [][]string{
		{"--api-cert", certFile},
		{"--api-key", keyFile},
		{"--api-plain", "--api-cert", certFile, "--api-key", keyFile},
		{"--api-cert", filepath.Join(dir, "missing.crt"), "--api-key", keyFile},
		{"--api-cert", keyFile, "--api-key", certFile},
	} {
		args := append([]string{"agent", "--data-dir", t.TempDir(), "--consensus-addr", freePort(t), "--api-addr", freePort(t)}, bad...)
		if _, errOut, code := run(t, args...); code == 0 || !strings.Contains(errOut, "--api-") {
			t.Errorf("agent %v: exit %d %q, want a clear refusal", bad, code, errOut)
		}
	}
}

// TestAnnouncerFlagsCheckedFirst: bad announcer flags stop the agent before
// it opens anything: with --bootstrap no cluster is made (there is no
// ha-state.json afterwards), and the message names the flag.
func TestAnnouncerFlagsCheckedFirst(t *testing.T) {
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--vip-mode", "bgp", "--vip", "198.18.1.100", "--bgp-asn", "x", "--bgp-peer", "198.18.0.20,asn=65000"}, "--bgp-asn"},
		{[]string{"--vip-mode", "bgp", "--vip", "198.18.1.100", "--bgp-asn", "65001"}, "no peer"},
		{[]string{"--vip-mode", "bgp", "--vip", "198.18.1.100", "--bgp-asn", "65001", "--bgp-peer", "198.18.0.20,asn=65000", "--bgp-mode", "both"}, "mode"},
		{[]string{"--vip-mode", "bgp", "--vip", "198.18.1.100", "--bgp-asn", "65001", "--bgp-peer", "198.18.0.20,asn=65000", "--bgp-community", "x:y"}, "communit"},
		{[]string{"--vip", "198.18.0.100/24"}, "--virt-interface"},
		{[]string{"--vip-mode", "external", "--vip", "198.18.0.100/24"}, "leave --vip out"},
		{[]string{"--vip-mode", "anycast"}, "arp, bgp or external"},
		{[]string{"--vip", "198.18.0.100/24", "--virt-interface", "rvt-nosuch0"}, "rvt-nosuch0"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"agent", "--data-dir", dir, "--bootstrap", "--consensus-addr", freePort(t), "--api-addr", freePort(t), "--fence=false"}, c.flags...)
		_, errOut, code := run(t, args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("agent %v: exit %d %q, want a refusal naming %q", c.flags, code, errOut, c.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "ha-state.json")); err == nil {
			t.Errorf("agent %v: a cluster was created before the flags were refused", c.flags)
		}
	}
}

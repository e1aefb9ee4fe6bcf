package haproxy

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func cluster() Config {
	return Config{Bind: "198.18.0.100:80", Servers: []Server{
		{Name: "n1", Addr: "198.18.0.1:8092"}, {Name: "n2", Addr: "198.18.0.2:8092"}, {Name: "n3", Addr: "198.18.0.3:8092"}}}
}

func TestGolden(t *testing.T) {
	withAgent := cluster()
	withAgent.CheckPort, withAgent.AgentPort, withAgent.Inter, withAgent.Fall = 8094, 8095, 200*time.Millisecond, 3
	withTLS := cluster()
	for i := range withTLS.Servers {
		withTLS.Servers[i].TLS = true
	}
	withTLS.CAFile = "testdata/ca.pem"
	tlsHealth := withTLS
	tlsHealth.CheckPort = 8094
	for name, cfg := range map[string]Config{"basic": cluster(), "agent": withAgent, "tls": withTLS, "tls-health-port": tlsHealth} {
		var b bytes.Buffer
		if err := Write(&b, cfg); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", name+".cfg")
		if *update {
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./haproxy -update)", err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s differs from %s:\n%s", name, golden, b.String())
		}
		checkWithHAProxy(t, b.Bytes())
	}
}

// checkWithHAProxy feeds the configuration to the real HAProxy.
func checkWithHAProxy(t *testing.T, cfg []byte) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is not installed: apt-get install -y haproxy (make test does)")
		}
		t.Skip("haproxy is not installed")
	}
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(f, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput()
	if err != nil || strings.Contains(string(out), "WARNING") {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

func TestBadConfigRefused(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"no servers":      func(c *Config) { c.Servers = nil },
		"bad bind":        func(c *Config) { c.Bind = "198.18.0.100" },
		"bad server addr": func(c *Config) { c.Servers[0].Addr = "nowhere" },
		"bad server name": func(c *Config) { c.Servers[0].Name = "a b" },
		"tiny interval":   func(c *Config) { c.Inter = time.Millisecond },
		"bad agent port":  func(c *Config) { c.AgentPort = 70000 },
		"TLS without CA":  func(c *Config) { c.Servers[0].TLS = true },
		"CA file space":   func(c *Config) { c.Servers[0].TLS, c.CAFile = true, "a b.pem" },
		"bad verify host": func(c *Config) { c.Servers[0].TLS, c.CAFile, c.VerifyHost = true, "ca.pem", "a b" },
	} {
		c := cluster()
		mutate(&c)
		var b bytes.Buffer
		if err := Write(&b, c); err == nil || b.Len() > 0 {
			t.Errorf("%s: accepted (%v), wrote %d bytes", name, err, b.Len())
		}
	}
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
)

// clientOptions are the flags shared by every command that talks to a
// running node's API.
type clientOptions struct {
	endpoint  string
	token     string // set in-process (the demo), never from a flag
	tokenFlag string // refused: see register
	tokenFile string
	dataDir   string
	caFile    string
	timeout   time.Duration
}

const defaultEndpoint = "https://127.0.0.1:8092"

func (o *clientOptions) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVarP(&o.endpoint, "endpoint", "E", envOr("RAFTVIP_ENDPOINT", defaultEndpoint), "API URL of a raftvip node (env RAFTVIP_ENDPOINT)")
	f.StringVar(&o.tokenFlag, "api-token", "", "refused: a secret on the command line is visible to every user (/proc); use --api-token-file or RAFTVIP_API_TOKEN")
	_ = f.MarkHidden("api-token")
	f.StringVar(&o.tokenFile, "api-token-file", os.Getenv("RAFTVIP_API_TOKEN_FILE"), "file holding the cluster's API bearer token (env RAFTVIP_API_TOKEN_FILE; or the token itself in RAFTVIP_API_TOKEN; default: Token from --data-dir's ha-state.json)")
	f.StringVar(&o.dataDir, "data-dir", envOr("RAFTVIP_DATA_DIR", defaultDataDir), "data directory whose ha-state.json holds the API token, when no other is given")
	f.StringVar(&o.caFile, "ca", os.Getenv("RAFTVIP_CA"), "PEM file of the CA that signed the API's certificate (env RAFTVIP_CA; default: the cluster CA in --data-dir's tls/ca.crt, else the system's roots)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for an answer")
}

// trust is how the client verifies the API's certificate: --ca, else the
// cluster CA in the data dir, else the system's roots; and an unconfigured
// node's bootstrap certificate when its secret (which names it) is known.
func (o *clientOptions) trust(secret string) (consensus.APITrust, error) {
	t := consensus.APITrust{Pin: consensus.BootstrapPin(secret)}
	switch {
	case o.caFile != "":
		pool, cluster, err := consensus.ReadCA(o.caFile)
		if err != nil {
			return t, fmt.Errorf("--ca: %w", err)
		}
		t.Roots, t.ClusterCA = pool, cluster
	case o.dataDir != "":
		pool, cluster, err := consensus.ReadCA(filepath.Join(o.dataDir, "tls", "ca.crt"))
		if err == nil {
			t.Roots, t.ClusterCA = pool, cluster
		}
	}
	if t.Pin == "" && o.dataDir != "" {
		if s, err := readSecretFile(filepath.Join(o.dataDir, consensus.BootstrapSecretFile)); err == nil {
			t.Pin = consensus.BootstrapPin(s)
		}
	}
	return t, nil
}

// readSecretFile reads a token from a file: one line, surrounding space
// trimmed, at most 4 KiB.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return "", err
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("%s is larger than 4 KiB: not a token", path)
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, "\r\n") {
		return "", fmt.Errorf("%s must hold the token alone, on one line", path)
	}
	return t, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// client is the CLI's client of one node's API (client.Client).
type client = route.Client

// apiError is an error answer from a node.
type apiError = route.Error

func (o *clientOptions) client() (*client, error) {
	if u, err := url.Parse(strings.TrimRight(o.endpoint, "/")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--endpoint %q must be an http:// or https:// URL such as %s", o.endpoint, defaultEndpoint)
	}
	if o.tokenFlag != "" {
		return nil, errors.New("--api-token would show the token to every user of this machine (/proc/PID/cmdline): put it in a file for --api-token-file, or in RAFTVIP_API_TOKEN")
	}
	tok := o.token
	if tok == "" {
		tok = os.Getenv("RAFTVIP_API_TOKEN")
	}
	if tok == "" && o.tokenFile != "" {
		t, err := readSecretFile(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--api-token-file: %w", err)
		}
		tok = t
	}
	if tok == "" && o.dataDir != "" {
		if st, err := consensus.ReadHAState(o.dataDir); err == nil {
			tok = st.Token
		}
	}
	if tok == "" && o.dataDir != "" {
		// A node in no cluster yet answers to its bootstrap secret.
		if s, err := readSecretFile(filepath.Join(o.dataDir, consensus.BootstrapSecretFile)); err == nil {
			tok = s
		}
	}
	t, err := o.trust(tok)
	if err != nil {
		return nil, err
	}
	tr := t.Transport(nil)
	return route.New(o.endpoint, tok, &http.Client{
		Timeout:       o.timeout,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

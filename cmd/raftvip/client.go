package main

import (
	"bytes"
	"context"
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

// apiError is an error answer from a node: the JSON body's message and code
// and the HTTP status.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Message, e.Code, e.Status)
}

// client calls one node's API.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

func (o *clientOptions) client() (*client, error) {
	u, err := url.Parse(strings.TrimRight(o.endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
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
	return &client{base: u, token: tok, http: &http.Client{
		Timeout:       o.timeout,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (if not nil). An error answer becomes an *apiError.
func (c *client) do(ctx context.Context, method, path string, in any, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		switch v := in.(type) {
		case []byte:
			body = bytes.NewReader(v)
		default:
			b, err := json.Marshal(in)
			if err != nil {
				return nil, err
			}
			body = bytes.NewReader(b)
		}
	}
	return c.doRaw(ctx, method, path, body, nil, out)
}

func (c *client) doRaw(ctx context.Context, method, path string, body io.Reader, hdr map[string]string, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, hdr, out)
}

// send sends a prepared request with the token and extra headers, and
// decodes the answer as do does.
func (c *client) send(req *http.Request, hdr map[string]string, out any) (http.Header, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach raftvip at %s: %w (is the agent running? set --endpoint or RAFTVIP_ENDPOINT)", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer from %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return resp.Header, &apiError{Status: resp.StatusCode, Code: e.Code, Message: e.Error}
		}
		return resp.Header, &apiError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(raw))}
	}
	if out != nil {
		if p, ok := out.(*[]byte); ok {
			*p = raw
			return resp.Header, nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, fmt.Errorf("decoding the answer from %s: %w", c.base, err)
		}
	}
	return resp.Header, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

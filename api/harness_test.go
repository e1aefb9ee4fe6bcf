package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftvip/raftvip/consensus"
)

// tnode is one in-process node: consensus + API on loopback ports.
type tnode struct {
	t       testing.TB
	id      string
	dir     string
	cons    string
	apiAddr string
	url     string
	node    *consensus.Node
	srv     *http.Server
	closed  atomic.Bool // read by writer goroutines while the test stops nodes
}

type tcluster struct {
	t     testing.TB
	nodes []*tnode
	token string
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	if os.Getenv("RAFTVIP_TEST_LOG") != "" {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func testTiming() consensus.Timing { return consensus.DefaultTiming() }

// plainAPI serves the test nodes' API in plain HTTP instead of TLS
// (RAFTVIP_TEST_API_PLAIN=1): bench/writes.sh measures what TLS costs.
var plainAPI = os.Getenv("RAFTVIP_TEST_API_PLAIN") == "1"

// testTLS is the test clients' TLS configuration. The tests here are about
// the API's behaviour, so they do not verify the nodes' certificates; the
// CLI's tests (cmd/raftvip) and the enroll tests below do.
var testTLS = &tls.Config{InsecureSkipVerify: true}

// start opens (or reopens) a node and serves its API.
func (n *tnode) start(observer bool) {
	t := n.t
	t.Helper()
	logger := slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", n.id)
	node, err := consensus.New(consensus.Config{DataDir: n.dir, NodeID: n.id, ConsensusAddr: n.cons, APIURL: n.url,
		Observer: observer, Timing: testTiming(), Logger: logger})
	if err != nil {
		t.Fatalf("starting %s: %v", n.id, err)
	}
	srv := New(node, logger, 0)
	node.SetRPCHandler(srv)
	ln, err := net.Listen("tcp", n.apiAddr)
	if err != nil {
		t.Fatalf("api listen %s: %v", n.apiAddr, err)
	}
	if !plainAPI {
		// As the agent serves it: the bootstrap certificate before the
		// node is in a cluster, the cluster CA's after.
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}, GetCertificate: node.APICertificate})
	}
	n.node = node
	n.closed.Store(false)
	n.srv = &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go n.srv.Serve(ln)
}

// dialAPI opens a raw connection to the node's API (TLS unless plainAPI).
func (n *tnode) dialAPI() (net.Conn, error) {
	if plainAPI {
		return net.Dial("tcp", n.apiAddr)
	}
	return tls.Dial("tcp", n.apiAddr, testTLS)
}

// stop closes the node abruptly (no leadership transfer): a crash as far
// as the others can tell.
func (n *tnode) stop() {
	if n.closed.Swap(true) {
		return
	}
	n.srv.Close()
	n.node.Close()
}

func newCluster(t testing.TB) *tcluster {
	c := &tcluster{t: t}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.stop()
		}
	})
	return c
}

// add creates a node (not yet in the cluster).
func (c *tcluster) add(observer bool) *tnode {
	c.t.Helper()
	api := freePort(c.t)
	scheme := "https://"
	if plainAPI {
		scheme = "http://"
	}
	n := &tnode{t: c.t, id: fmt.Sprintf("n%d", len(c.nodes)+1), dir: c.t.TempDir(), cons: freePort(c.t), apiAddr: api, url: scheme + api}
	n.start(observer)
	// Registered after TempDir's own clean-up, so it runs before it: the
	// node stops before its directory is removed.
	c.t.Cleanup(n.stop)
	c.nodes = append(c.nodes, n)
	return n
}

// waitBlobEverywhere waits until every node holds blob sha.
func (c *tcluster) waitBlobEverywhere(sha string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range c.nodes {
		for !n.node.Store().HasBlob(sha) {
			if time.Now().After(deadline) {
				c.t.Fatalf("%s never got the blob", n.id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// boot makes a cluster of size nodes: init on the first, enroll the rest.
func (c *tcluster) boot(size int) {
	c.t.Helper()
	first := c.add(false)
	if st, body := c.do(first, "POST", "/api/v1/ha/init", "{}", map[string]string{"Authorization": "Bearer " + first.node.BootstrapSecret()}); st != 200 {
		c.t.Fatalf("init: %d %s", st, body)
	}
	c.token = first.node.HAState().Token
	for i := 1; i < size; i++ {
		c.enroll(c.add(false))
	}
}

func (c *tcluster) enroll(n *tnode) {
	c.t.Helper()
	via := c.active(10 * time.Second)
	body, _ := json.Marshal(EnrollRequest{URL: n.url, Secret: n.node.BootstrapSecret()})
	if st, out := c.do(via, "POST", "/api/v1/ha/members", string(body), nil); st != 200 {
		c.t.Fatalf("enroll %s: %d %s", n.id, st, out)
	}
}

// other returns a node of the cluster other than n (the first one).
func (c *tcluster) other(n *tnode) *tnode {
	for _, o := range c.nodes {
		if o != n {
			return o
		}
	}
	c.t.Fatal("the cluster has no other node")
	return nil
}

// active waits for exactly one live node to be active and returns it.
func (c *tcluster) active(within time.Duration) *tnode {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var act []*tnode
		for _, n := range c.nodes {
			if !n.closed.Load() && n.node.IsActive() {
				act = append(act, n)
			}
		}
		if len(act) > 1 {
			c.t.Fatalf("two active nodes at once: %s and %s", act[0].id, act[1].id)
		}
		if len(act) == 1 {
			return act[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no active node within %v", within)
	return nil
}

func (c *tcluster) live() []*tnode {
	var out []*tnode
	for _, n := range c.nodes {
		if !n.closed.Load() {
			out = append(out, n)
		}
	}
	return out
}

// httpClient does not follow redirects, so that tests see the 307 itself.
var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, TLSClientConfig: testTLS},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request to node n and returns status and body.
func (c *tcluster) do(n *tnode, method, path, body string, hdr map[string]string) (int, []byte) {
	st, b, _ := c.doH(n, method, path, body, hdr)
	return st, b
}

func (c *tcluster) doH(n *tnode, method, path, body string, hdr map[string]string) (int, []byte, http.Header) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	st, b, h := c.send(n, method, path, rd, hdr)
	return st, bytes.TrimSpace(b), h
}

// send sends a request to node n, with the cluster's token once it has one,
// and returns status, the whole body and the headers. A read refused with
// 503 (the node lost its lease or leadership for a moment, as it may on a
// loaded machine) is retried for up to 20 s, as a client that honours
// Retry-After would.
func (c *tcluster) send(n *tnode, method, path string, body io.Reader, hdr map[string]string) (int, []byte, http.Header) {
	if body != nil || (method != http.MethodGet && method != http.MethodHead) {
		return c.sendOnce(n, method, path, body, hdr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, b, h := c.sendOnce(n, method, path, nil, hdr)
		if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return st, b, h
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *tcluster) sendOnce(n *tnode, method, path string, body io.Reader, hdr map[string]string) (int, []byte, http.Header) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error()), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// waitApplied polls until every live node has applied at least index.
func (c *tcluster) waitApplied(index uint64, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for _, n := range c.live() {
		for {
			if a, _ := n.node.Store().Applied(); a >= index {
				break
			}
			if time.Now().After(deadline) {
				a, _ := n.node.Store().Applied()
				c.t.Fatalf("%s applied %d, want >= %d within %v", n.id, a, index, within)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

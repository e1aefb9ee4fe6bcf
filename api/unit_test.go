package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// fakeNode is a one-node "cluster" in memory: always active, its writes
// applied straight to a real store. Methods it does not define belong to
// the nil embedded Node: a handler that reaches one panics, and the test
// fails.
type fakeNode struct {
	Node
	st *store.Store

	mu      sync.Mutex
	applied []*store.Command
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	st, err := store.Open(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fakeNode{st: st}
}

func (f *fakeNode) ID() string                        { return "f1" }
func (f *fakeNode) Store() *store.Store               { return f.st }
func (f *fakeNode) ReadBarrier(context.Context) error { return nil }
func (f *fakeNode) IsActive() bool                    { return true }
func (f *fakeNode) BootstrapSecret() string           { return "" }
func (f *fakeNode) Timing() consensus.Timing          { return consensus.DefaultTiming() }
func (f *fakeNode) Status() consensus.NodeStatus {
	return consensus.NodeStatus{ID: "f1", Role: "active"}
}
func (f *fakeNode) FullStatus() consensus.NodeStatus { return f.Status() }
func (f *fakeNode) Leader(context.Context) (string, string, error) {
	return "f1", "127.0.0.1:1", nil
}
func (f *fakeNode) HAState() consensus.HAState {
	return consensus.HAState{Valid: true, Token: "tok", HaID: "c1", ConsensusID: "f1"}
}

func (f *fakeNode) Apply(_ context.Context, cmd *store.Command) (store.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, cmd)
	data, err := cmd.Encode()
	if err != nil {
		return store.Result{}, err
	}
	return f.st.ApplyBatch([]store.Entry{{Index: uint64(len(f.applied)) + 1, Term: 1, Data: data}})[0], nil
}

func (f *fakeNode) proposals() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

// TestHandlersWithAFakeNode: the object handlers on a fake node, without a
// cluster: a good write is proposed once and read back; bad input, a
// missing token and a wrong precondition are refused with a JSON 4xx and
// propose nothing.
func TestHandlersWithAFakeNode(t *testing.T) {
	f := newFakeNode(t)
	srv := httptest.NewServer(New(f, slog.New(slog.NewTextHandler(io.Discard, nil)), 0))
	defer srv.Close()
	do := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := do("PUT", "/api/v1/objects/machine/m1", `{"name":"m1"}`); st != 200 || f.proposals() != 1 || f.applied[0].Op != store.OpPut || f.applied[0].Key != "m1" {
		t.Fatalf("PUT: %d %s, %d proposals", st, body, f.proposals())
	}
	if st, body := do("GET", "/api/v1/objects/machine/m1", ""); st != 200 || !strings.Contains(body, `"name":"m1"`) {
		t.Fatalf("GET: %d %s", st, body)
	}
	for _, c := range []struct {
		method, path, body string
		hdr                []string
		want               int
	}{
		{"PUT", "/api/v1/objects/machine/m2", `{"a":1,"a":2}`, nil, 400},
		{"PUT", "/api/v1/objects/machine/m2", strings.Repeat("[", 100) + strings.Repeat("]", 100), nil, 400},
		{"PUT", "/api/v1/objects/machine/m2", `{"a":1}`, []string{"Content-Type", "text/plain"}, 415},
		{"PUT", "/api/v1/objects/machine/m1", `{"a":1}`, []string{"If-Match", `W/"1"`}, 400},
		{"PUT", "/api/v1/objects/machine/m1", `{"a":1}`, []string{"If-Match", `"999"`}, 412},
		{"PUT", "/api/v1/objects/machine/m2", `{"a":1}`, []string{"Authorization", "Bearer wrong"}, 401},
		{"PUT", "/api/v1/objects/Machine/m2", `{"a":1}`, nil, 400},
		{"PATCH", "/api/v1/objects/machine/m1", `{"a":`, nil, 400},
	} {
		before := f.proposals()
		st, body := do(c.method, c.path, c.body, c.hdr...)
		if st != c.want || !strings.Contains(body, `"code"`) {
			t.Errorf("%s %s %q %v: %d %s, want %d with a JSON error", c.method, c.path, c.body, c.hdr, st, body, c.want)
		}
		if n := f.proposals() - before; n != 0 && c.want != 412 {
			t.Errorf("%s %s %q %v: %d proposals, want none", c.method, c.path, c.body, c.hdr, n)
		}
	}
	if st, body := do("GET", "/api/v1/ha/node", ""); st != 200 || !strings.Contains(body, `"id":"f1"`) {
		t.Fatalf("GET /ha/node: %d %s", st, body)
	}
}

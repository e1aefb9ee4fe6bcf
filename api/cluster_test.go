package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// writers sends puts through the given nodes until stop is closed and
// records every key whose write was acknowledged.
type writers struct {
	c     *tcluster
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked map[string]int
	sent  atomic.Int64
}

func startWriters(c *tcluster, n int, pick func(i int) *tnode) *writers {
	w := &writers{c: c, stop: make(chan struct{}), acked: map[string]int{}}
	for g := 0; g < n; g++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", g, i)
				node := pick(i)
				if node.closed.Load() {
					continue
				}
				w.sent.Add(1)
				st, _ := c.do(node, "PUT", "/api/v1/objects/item/"+key, fmt.Sprintf(`{"g":%d,"i":%d}`, g, i), nil)
				if st == 200 {
					w.mu.Lock()
					w.acked[key] = i
					w.mu.Unlock()
				} else {
					time.Sleep(5 * time.Millisecond) // back off while there is no leader
				}
			}
		}()
	}
	return w
}

func (w *writers) finish() map[string]int {
	close(w.stop)
	w.wg.Wait()
	return w.acked
}

// checkAll verifies that every acknowledged key reads back on node n.
func (c *tcluster) checkAll(n *tnode, acked map[string]int, stale bool) {
	c.t.Helper()
	q := ""
	if stale {
		q = "?stale"
	}
	for key, i := range acked {
		st, body := c.do(n, "GET", "/api/v1/objects/item/"+key+q, "", nil)
		if st != 200 {
			c.t.Fatalf("acknowledged write %s lost on %s: %d %s", key, n.id, st, body)
		}
		var o struct{ Value struct{ I int } }
		if err := json.Unmarshal(body, &o); err != nil || o.Value.I != i {
			c.t.Fatalf("%s on %s: %s", key, n.id, body)
		}
	}
}

func (c *tcluster) checkConsistent(via *tnode) {
	c.t.Helper()
	st, body := c.do(via, "GET", "/api/v1/ha/status", "", nil)
	if st != 200 {
		c.t.Fatalf("status: %d %s", st, body)
	}
	var cs consensus.ClusterStatus
	if err := json.Unmarshal(body, &cs); err != nil {
		c.t.Fatal(err)
	}
	if !cs.Consistent {
		c.t.Fatalf("state hashes differ: %s", body)
	}
}

func TestFailoverKeepsAcknowledgedWrites(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	var rr atomic.Int64
	w := startWriters(c, 4, func(int) *tnode {
		live := c.live()
		return live[int(rr.Add(1))%len(live)]
	})
	for w.sent.Load() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	old := c.active(5 * time.Second)
	old.stop()
	killed := time.Now()
	neu := c.active(10 * time.Second)
	t.Logf("new active %s after %v", neu.id, time.Since(killed))
	for sent := w.sent.Load(); w.sent.Load() < sent+200; {
		time.Sleep(5 * time.Millisecond)
	}
	acked := w.finish()
	if len(acked) < 200 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	c.checkAll(neu, acked, false)
	idx, _ := neu.node.Store().Applied()
	c.waitApplied(idx, 10*time.Second)
	for _, n := range c.live() {
		c.checkAll(n, acked, true)
	}
	c.checkConsistent(neu)
}

func TestEnrollAndRemoveWhileWriting(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	first := append([]*tnode(nil), c.nodes...) // the writers' nodes; c.nodes grows below
	w := startWriters(c, 4, func(i int) *tnode { return first[i%3] })
	n4 := c.add(false)
	c.enroll(n4)
	n5 := c.add(false)
	c.enroll(n5)
	act := c.active(5 * time.Second)
	var victim *tnode
	for _, n := range c.nodes[:3] {
		if n != act {
			victim = n
			break
		}
	}
	if st, body := c.do(act, "DELETE", "/api/v1/ha/members/"+victim.id, "", nil); st != 200 {
		t.Fatalf("remove: %d %s", st, body)
	}
	// Removing the active node is refused with a clear error.
	if st, body := c.do(act, "DELETE", "/api/v1/ha/members/"+act.id, "", nil); st != 409 || !strings.Contains(string(body), "transfer") {
		t.Fatalf("removing the active node: %d %s", st, body)
	}
	for sent := w.sent.Load(); w.sent.Load() < sent+100; {
		time.Sleep(5 * time.Millisecond)
	}
	acked := w.finish()
	victim.stop()
	idx, _ := act.node.Store().Applied()
	c.waitApplied(idx, 15*time.Second)
	for _, n := range c.live() {
		c.checkAll(n, acked, true)
	}
	st, body := c.do(act, "GET", "/api/v1/ha/status", "", nil)
	var cs consensus.ClusterStatus
	if st != 200 || json.Unmarshal(body, &cs) != nil {
		t.Fatalf("status: %d %s", st, body)
	}
	if cs.Voters != 4 || !cs.Consistent {
		t.Fatalf("want 4 consistent voters: %s", body)
	}
	if !strings.Contains(strings.Join(cs.Warnings, "\n"), "even number") {
		t.Fatalf("no warning about an even number of voters: %v", cs.Warnings)
	}
}

func TestRestartAllKeepsData(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	for i := 0; i < 50; i++ {
		if st, body := c.do(act, "PUT", fmt.Sprintf("/api/v1/objects/item/k%d", i), fmt.Sprintf(`{"i":%d}`, i), nil); st != 200 {
			t.Fatalf("put: %d %s", st, body)
		}
	}
	for _, n := range c.nodes {
		n.stop()
	}
	for _, n := range c.nodes {
		n.start(false)
	}
	act = c.active(15 * time.Second)
	for i := 0; i < 50; i++ {
		st, body := c.do(act, "GET", fmt.Sprintf("/api/v1/objects/item/k%d", i), "", nil)
		if st != 200 || !strings.Contains(string(body), fmt.Sprintf(`"i":%d`, i)) {
			t.Fatalf("after restart k%d: %d %s", i, st, body)
		}
	}
	c.checkConsistent(act)
}

func TestHTTPSemantics(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	passive := c.other(act)
	type req struct {
		node       *tnode
		method     string
		path, body string
		hdr        map[string]string
		want       int
		wantCode   string
	}
	steps := []req{
		{act, "POST", "/api/v1/objects/machine/m1", `{"name":"a"}`, nil, 201, ""},
		{act, "POST", "/api/v1/objects/machine/m1", `{"name":"b"}`, nil, 409, "exists"},
		{passive, "POST", "/api/v1/objects/machine/m1", `{"name":"b"}`, nil, 409, "exists"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": `"1"`}, 412, "revision_mismatch"},
		{act, "PUT", "/api/v1/objects/machine/m2", `{"name":"c"}`, map[string]string{"If-None-Match": "*"}, 200, ""},
		{act, "PUT", "/api/v1/objects/machine/m2", `{"name":"c"}`, map[string]string{"If-None-Match": "*"}, 412, "revision_mismatch"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": "abc"}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": ""}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": `W/"1"`}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": `1`}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": `"01"`}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": `"1", "2"`}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-Match": `"1"`, "If-None-Match": "*"}, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m1", `{"name":"c"}`, map[string]string{"If-None-Match": `"3"`}, 400, "bad_request"},
		{passive, "PATCH", "/api/v1/objects/machine/m1", `{"tags":["x"]}`, map[string]string{"Content-Type": "application/merge-patch+json"}, 200, ""},
		{act, "PATCH", "/api/v1/objects/machine/nope", `{"a":1}`, nil, 404, "not_found"},
		{act, "PUT", "/api/v1/objects/Machine/m1", `{}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/..", `{}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/a%2Fb", `{}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", `[1,2]`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", `{"a":`, nil, 400, "bad_request"},
		// Strict input (I-JSON, bounded depth, safe keys): refused, nothing proposed.
		{act, "PUT", "/api/v1/objects/machine/m3", `{"a":1,"a":2}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", `{"a":1e400}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", "{\"a\":\"\xff\"}", nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", `{"a":"\ud800"}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", `{"a":1} {"b":2}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", strings.Repeat(`{"a":`, 9990) + "1" + strings.Repeat("}", 9990), nil, 400, "bad_request"},
		{act, "PATCH", "/api/v1/objects/machine/m1", strings.Repeat(`{"a":`, 9990) + "1" + strings.Repeat("}", 9990), nil, 400, "bad_request"},
		{passive, "PATCH", "/api/v1/objects/machine/m1", `{"a":{"b":1,"b":2}}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/a%C2%85b", `{}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/a%E2%80%AEb", `{}`, nil, 400, "bad_request"},
		{act, "PUT", "/api/v1/objects/machine/m3", `{}`, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{passive, "PUT", "/api/v1/objects/machine/m3", `a=1`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"},
		{act, "POST", "/api/v1/ha/transfer", `{} x`, nil, 400, "bad_request"},
		{act, "POST", "/api/v1/ha/transfer", `{"to":"a","to":"b"}`, nil, 400, "bad_request"},
		{act, "POST", "/api/v1/ha/transfer", `{}`, map[string]string{"Content-Type": "text/xml"}, 415, "unsupported_media_type"},
		{act, "PUT", "/api/v1/objects/machine/m3", `{"a":"` + strings.Repeat("x", DefaultMaxBody) + `"}`, nil, 413, "too_large"},
		{passive, "PUT", "/api/v1/objects/machine/m3", `not json`, nil, 400, "bad_request"},
		{act, "TRACE", "/api/v1/objects/machine/m3", ``, nil, 405, "method_not_allowed"},
		{act, "GET", "/api/v1/nothing", ``, nil, 404, "not_found"},
		{act, "GET", "/api/v1/objects/machine?limit=x", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?limit=1&limit=2", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?limit=01", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?limit=-1", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?limt=5", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?after=%FF", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?after=a%00b", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?prefix=" + strings.Repeat("x", 5000), ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine?after=%zz", ``, nil, 400, "bad_request"},
		{act, "GET", "/api/v1/objects/machine", ``, map[string]string{"Authorization": "Bearer wrong"}, 401, "unauthorized"},
		{act, "DELETE", "/api/v1/objects/machine/m2", ``, nil, 200, ""},
		{passive, "DELETE", "/api/v1/objects/machine/m2", ``, nil, 404, "not_found"},
		{act, "POST", "/api/v1/ha/transfer", `{"to":"nobody"}`, nil, 404, "unknown_member"},
		{act, "POST", "/api/v1/ha/transfer", `{"bogus":1}`, nil, 400, "bad_request"},
		{act, "POST", "/api/v1/ha/members", `{"url":"ftp://x"}`, nil, 400, "bad_request"},
		{act, "POST", "/api/v1/ha/init", `{}`, nil, 409, "refused"},
	}
	for i, s := range steps {
		applied, _ := act.node.Store().Applied()
		st, body := c.do(s.node, s.method, s.path, s.body, s.hdr)
		if st != s.want {
			t.Fatalf("step %d %s %s on %s: %d %s, want %d", i, s.method, s.path, s.node.id, st, body, s.want)
		}
		if s.want >= 400 {
			var e Error
			if err := json.Unmarshal(body, &e); err != nil || e.Code != s.wantCode || e.Error == "" {
				t.Fatalf("step %d: error body %s, want code %q", i, body, s.wantCode)
			}
			if s.want != 409 && s.want != 412 && s.want != 404 {
				if now, _ := act.node.Store().Applied(); now != applied {
					t.Fatalf("step %d: refused request changed the applied index %d -> %d", i, applied, now)
				}
			}
		}
	}
	// The patch merged, and every node serves the same thing.
	st, body, hdr := c.doH(passive, "GET", "/api/v1/objects/machine/m1", "", nil)
	if st != 200 || !strings.Contains(string(body), `"name":"a"`) || !strings.Contains(string(body), `"tags":["x"]`) || hdr.Get(HeaderNode) != act.id {
		t.Fatalf("forwarded read: %d %s served by %s", st, body, hdr.Get(HeaderNode))
	}
	etag := hdr.Get("ETag")
	if st, body := c.do(act, "PUT", "/api/v1/objects/machine/m1", `{"name":"d"}`, map[string]string{"If-Match": etag}); st != 200 {
		t.Fatalf("CAS with current ETag %s: %d %s", etag, st, body)
	}
	idx, _ := act.node.Store().Applied()
	c.waitApplied(idx, 5*time.Second)
	st, body, hdr = c.doH(passive, "GET", "/api/v1/objects/machine/m1?stale", "", nil)
	if st != 200 || hdr.Get(HeaderStale) != "true" || hdr.Get(HeaderNode) != passive.id || hdr.Get(HeaderApplied) == "" || hdr.Get(HeaderLag) == "" {
		t.Fatalf("stale read: %d %s %v", st, body, hdr)
	}
	st, _, hdr = c.doH(passive, "GET", "/api/v1/objects/machine/m1", "", map[string]string{HeaderRedirect: "1"})
	if st != 307 || !strings.HasPrefix(hdr.Get("Location"), act.url) {
		t.Fatalf("redirect: %d %v", st, hdr)
	}
	// A list with pagination: two objects, pages of one.
	if st, body := c.do(act, "PUT", "/api/v1/objects/machine/m9", `{"name":"z"}`, nil); st != 200 {
		t.Fatalf("put m9: %d %s", st, body)
	}
	st, body = c.do(passive, "GET", "/api/v1/objects/machine?limit=1", "", nil)
	if st != 200 || !strings.Contains(string(body), `"key":"m1"`) || !strings.Contains(string(body), `"next":"m1"`) {
		t.Fatalf("list page 1: %d %s", st, body)
	}
	st, body = c.do(passive, "GET", "/api/v1/objects/machine?limit=1&after=m1", "", nil)
	if st != 200 || !strings.Contains(string(body), `"key":"m9"`) || strings.Contains(string(body), `"next"`) {
		t.Fatalf("list page 2: %d %s", st, body)
	}
}

func TestTransferAndFailoverSafe(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	st, body := c.do(act, "GET", "/api/v1/ha/failover-safe?wait=2s", "", nil)
	if st != 200 || !strings.Contains(string(body), `"safe":true`) {
		t.Fatalf("failover-safe: %d %s", st, body)
	}
	var target *tnode
	for _, n := range c.nodes {
		if n != act {
			target = n
		}
	}
	if st, body := c.do(act, "POST", "/api/v1/ha/transfer", fmt.Sprintf(`{"to":%q}`, target.id), nil); st != 200 {
		t.Fatalf("transfer: %d %s", st, body)
	}
	if now := c.active(5 * time.Second); now != target {
		t.Fatalf("active is %s, want %s", now.id, target.id)
	}
	st, body = c.do(act, "GET", "/api/v1/ha/failover-safe?wait=9s", "", nil)
	if st != 400 {
		t.Fatalf("failover-safe with a too long wait: %d %s", st, body)
	}
}

// TestObserverNeverActive: an observer votes and replicates but is never
// active; leadership cannot be handed to it, and when the active node dies
// the passive node takes over even if the observer wins the election.
func TestObserverNeverActive(t *testing.T) {
	c := newCluster(t)
	c.boot(2)
	obs := c.add(true)
	c.enroll(obs)
	act := c.active(5 * time.Second)
	if st, body := c.do(act, "POST", "/api/v1/ha/transfer", fmt.Sprintf(`{"to":%q}`, obs.id), nil); st != 409 || !strings.Contains(string(body), "observer") {
		t.Fatalf("transfer to the observer: %d %s", st, body)
	}
	if st, body := c.do(act, "PUT", "/api/v1/objects/item/x", `{"v":1}`, nil); st != 200 {
		t.Fatalf("put: %d %s", st, body)
	}
	idx, _ := act.node.Store().Applied()
	c.waitApplied(idx, 5*time.Second)
	if st := obs.node.Status(); st.Role != "observer" {
		t.Fatalf("observer's role is %q", st.Role)
	}
	for round := 0; round < 3; round++ {
		act = c.active(10 * time.Second)
		act.stop()
		var passive *tnode
		for _, n := range c.nodes[:2] {
			if n != act {
				passive = n
			}
		}
		// Until the passive node is active, the observer must never be.
		deadline := time.Now().Add(20 * time.Second)
		for !passive.node.IsActive() {
			if obs.node.IsActive() {
				t.Fatal("the observer became active")
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %s did not become active; observer status %+v", round, passive.id, obs.node.Status())
			}
			time.Sleep(2 * time.Millisecond)
		}
		st, body := c.do(passive, "GET", "/api/v1/objects/item/x", "", nil)
		if st != 200 {
			t.Fatalf("read after failover: %d %s", st, body)
		}
		act.start(false)
	}
}

// TestDivergenceDetected: a node whose state differs from the others at the
// same index (what hashicorp/raft issue #695 can cause) is reported by the
// cluster status, which compares state hashes.
func TestDivergenceDetected(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	var victim *tnode
	for _, n := range c.nodes {
		if n != act {
			victim = n
		}
	}
	put := func(key string) {
		if st, body := c.do(act, "PUT", "/api/v1/objects/item/"+key, `{"v":1}`, nil); st != 200 {
			t.Fatalf("put: %d %s", st, body)
		}
	}
	put("a")
	idx, _ := act.node.Store().Applied()
	c.waitApplied(idx, 5*time.Second)
	c.checkConsistent(act)
	// Apply, on the victim alone, a different command at the next index:
	// the real entry at that index will then be skipped there.
	cmd := store.Command{Op: store.OpPut, Kind: "item", Key: "rogue", Value: []byte(`{"v":2}`), Time: 1}
	data, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	applied, term := victim.node.Store().Applied()
	victim.node.Store().ApplyBatch([]store.Entry{{Index: applied + 1, Term: term, Data: data}})
	put("b")
	idx, _ = act.node.Store().Applied()
	c.waitApplied(idx, 5*time.Second)
	st, body := c.do(act, "GET", "/api/v1/ha/status", "", nil)
	var cs consensus.ClusterStatus
	if st != 200 || json.Unmarshal(body, &cs) != nil {
		t.Fatalf("status: %d %s", st, body)
	}
	if cs.Consistent || !strings.Contains(strings.Join(cs.Warnings, "\n"), "DIVERGENCE") {
		t.Fatalf("divergence not reported: %s", body)
	}
}

// TestNotReadyHandsOver: an active node whose announcer cannot do its job
// hands leadership to a ready voter and says why; with no ready voter, the
// active node stays (an unready active node is better than none).
func TestNotReadyHandsOver(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(10 * time.Second)
	act.node.SetReadiness(func() string { return "test: the announcer is broken" })
	deadline := time.Now().Add(15 * time.Second)
	var next *tnode
	for next == nil || next == act {
		if time.Now().After(deadline) {
			t.Fatalf("%s is not ready and still active after 15 s", act.id)
		}
		time.Sleep(20 * time.Millisecond)
		next = c.active(5 * time.Second)
	}
	st := act.node.Status()
	if st.HandedOver == nil || st.HandedOver.To != next.id || st.NotReady == "" {
		t.Fatalf("%s's status after the hand-over: handed_over %+v, not_ready %q", act.id, st.HandedOver, st.NotReady)
	}
	cs, err := next.node.ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	said := false
	for _, w := range cs.Warnings {
		said = said || strings.Contains(w, act.id+" handed leadership to "+next.id) && strings.Contains(w, "the announcer is broken")
	}
	if !said {
		t.Fatalf("ha status does not say why: %q", cs.Warnings)
	}
	// Nobody ready: the active node stays.
	for _, n := range c.nodes {
		n.node.SetReadiness(func() string { return "test: no router" })
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if a := c.active(5 * time.Second); a != next {
			t.Fatalf("with no ready voter, %s handed over to %s", next.id, a.id)
		}
	}
}

// TestClaimedStart: a node in no cluster does nothing for a request without
// its bootstrap secret (init, join and enroll included), tells the caller
// where the secret is, and forgets the secret once it belongs to a cluster.
func TestClaimedStart(t *testing.T) {
	c := newCluster(t)
	c.boot(1)
	other := c.nodes[0]
	fresh := c.add(false)
	secret := fresh.node.BootstrapSecret()
	pin := consensus.BootstrapPin(secret)
	if pin == "" {
		t.Fatalf("bootstrap secret %q is not rvb1.<secret>.<pin>", secret)
	}
	// The node's API presents the certificate its secret names.
	if !plainAPI {
		conn, err := fresh.dialAPI()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw)
		conn.Close()
		if hex.EncodeToString(sum[:]) != pin {
			t.Fatalf("the unjoined node's API certificate is not the one its secret names")
		}
	}
	b, err := os.ReadFile(filepath.Join(fresh.dir, consensus.BootstrapSecretFile))
	if err != nil || strings.TrimSpace(string(b)) != secret {
		t.Fatalf("bootstrap-secret file: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(fresh.dir, consensus.BootstrapSecretFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bootstrap-secret file mode: %v %v", fi.Mode(), err)
	}
	for _, auth := range []string{"", "Bearer ", "Bearer " + strings.Repeat("0", 64), "Bearer " + secret[:63], secret} {
		for _, p := range []string{"/api/v1/ha/init", "/api/v1/ha/join"} {
			body := `{}`
			if p == "/api/v1/ha/join" {
				body = `{"join_url":"http://127.0.0.1:1","token":"x"}`
			}
			st, out := c.do(fresh, "POST", p, body, map[string]string{"Authorization": auth}) // replaces the cluster's token
			if st != 401 || !strings.Contains(string(out), consensus.BootstrapSecretFile) {
				t.Fatalf("POST %s with Authorization %q: %d %s, want 401 naming the secret file", p, auth, st, out)
			}
		}
	}
	if fresh.node.HAState().Valid {
		t.Fatal("refused requests configured the node")
	}
	// The cluster cannot enroll it without the secret either.
	// With the right secret but another certificate's pin (an impostor
	// at the node's address would present its own certificate): the
	// cluster refuses to talk to it, so neither the secret nor a join
	// token reaches it.
	impostor := secret[:len(secret)-64] + strings.Repeat("0", 64)
	if !plainAPI {
		body, _ := json.Marshal(EnrollRequest{URL: fresh.url, Secret: impostor})
		if st, out := c.do(other, "POST", "/api/v1/ha/members", string(body), nil); st != 502 || !strings.Contains(string(out), "bootstrap secret names") {
			t.Fatalf("enroll of a node whose certificate the secret does not name: %d %s, want 502", st, out)
		}
	}
	for _, sec := range []string{"", "wrong", secret[:len(secret)-1]} {
		body, _ := json.Marshal(EnrollRequest{URL: fresh.url, Secret: sec})
		if st, out := c.do(other, "POST", "/api/v1/ha/members", string(body), nil); st < 400 {
			t.Fatalf("enroll with secret %q: %d %s", sec, st, out)
		}
	}
	if fresh.node.HAState().Valid {
		t.Fatal("an enroll without the secret configured the node")
	}
	// With it: enrolled, and the secret is gone.
	body, _ := json.Marshal(EnrollRequest{URL: fresh.url, Secret: secret})
	if st, out := c.do(other, "POST", "/api/v1/ha/members", string(body), nil); st != 200 {
		t.Fatalf("enroll with the secret: %d %s", st, out)
	}
	if fresh.node.BootstrapSecret() != "" {
		t.Fatal("the secret still works after the node joined")
	}
	if _, err := os.Stat(filepath.Join(fresh.dir, consensus.BootstrapSecretFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bootstrap-secret file after joining: %v", err)
	}
	if st, _ := c.do(fresh, "GET", "/api/v1/objects/machine", "", map[string]string{"Authorization": "Bearer " + secret}); st != 401 {
		t.Fatalf("the old secret after joining: %d, want 401", st)
	}
}

// TestTokenRoles: named tokens are created (the secret shown once), listed
// and revoked through the API by an admin; a read token reads but writes
// nothing, a write token writes but administers nothing, on the active node
// and through a passive one; a revoked token is refused; the cluster token
// stays admin.
func TestTokenRoles(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(10 * time.Second)
	passive := c.other(act)
	create := func(name, role string) string {
		t.Helper()
		st, body := c.do(act, "POST", "/api/v1/tokens", fmt.Sprintf(`{"name":%q,"role":%q}`, name, role), nil)
		var info TokenInfo
		if st != 201 || json.Unmarshal(body, &info) != nil || !strings.HasPrefix(info.Token, "rvt_") || info.Role != role {
			t.Fatalf("create %s: %d %s", name, st, body)
		}
		return info.Token
	}
	reader, writer, admin := create("ci-reader", "read"), create("ci-writer", "write"), create("ops", "admin")
	as := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	for _, n := range []*tnode{act, passive} {
		steps := []struct {
			tok, method, path, body string
			want                    int
		}{
			{reader, "GET", "/api/v1/objects/machine", "", 200},
			{reader, "GET", "/api/v1/ha/status", "", 200},
			{reader, "PUT", "/api/v1/objects/machine/r-" + n.id, `{}`, 403},
			{reader, "GET", "/api/v1/ha/state", "", 403},
			{reader, "GET", "/api/v1/tokens", "", 403},
			{writer, "PUT", "/api/v1/objects/machine/w-" + n.id, `{}`, 200},
			{writer, "POST", "/api/v1/jobs/j-" + n.id + "/log", "line\n", 200},
			{writer, "POST", "/api/v1/ha/token", `{}`, 403},
			{writer, "POST", "/api/v1/tokens", `{"name":"x","role":"admin"}`, 403},
			{writer, "DELETE", "/api/v1/tokens/ci-reader", "", 403},
			{admin, "POST", "/api/v1/ha/token", `{}`, 200},
			{admin, "GET", "/api/v1/tokens", "", 200},
			{"rvt_" + strings.Repeat("0", 64), "GET", "/api/v1/objects/machine", "", 401},
		}
		for _, s := range steps {
			applied, _ := act.node.Store().Applied()
			st, body := c.do(n, s.method, s.path, s.body, as(s.tok))
			if st != s.want {
				t.Fatalf("on %s: %s %s: %d %s, want %d", n.id, s.method, s.path, st, body, s.want)
			}
			if s.want >= 400 {
				if now, _ := act.node.Store().Applied(); now != applied {
					t.Fatalf("on %s: refused %s %s changed the applied index", n.id, s.method, s.path)
				}
			}
		}
	}
	// The list shows names and roles, never secrets or hashes.
	_, body := c.do(act, "GET", "/api/v1/tokens", "", as(admin))
	if strings.Contains(string(body), "rvt_") || strings.Contains(string(body), store.HashToken(reader)) || !strings.Contains(string(body), `"ci-reader"`) {
		t.Fatalf("token list: %s", body)
	}
	// Bad creations.
	for _, b := range []string{`{"name":"Bad Name","role":"read"}`, `{"name":"x","role":"root"}`, `{"name":"ci-reader","role":"read"}`} {
		if st, out := c.do(act, "POST", "/api/v1/tokens", b, as(admin)); st != 400 && st != 409 {
			t.Fatalf("create %s: %d %s", b, st, out)
		}
	}
	// Revoked: refused everywhere once applied.
	if st, out := c.do(act, "DELETE", "/api/v1/tokens/ci-reader", "", as(admin)); st != 200 {
		t.Fatalf("revoke: %d %s", st, out)
	}
	idx, _ := act.node.Store().Applied()
	c.waitApplied(idx, 5*time.Second)
	for _, n := range c.nodes {
		if st, _ := c.do(n, "GET", "/api/v1/objects/machine", "", as(reader)); st != 401 {
			t.Fatalf("revoked token on %s: %d, want 401", n.id, st)
		}
	}
	if st, _ := c.do(act, "DELETE", "/api/v1/tokens/ci-reader", "", as(admin)); st != 404 {
		t.Fatalf("revoking twice: %d, want 404", st)
	}
}

// apiSerial is the serial of the certificate n's API presents to a new
// connection.
func apiSerial(t *testing.T, n *tnode) string {
	t.Helper()
	conn, err := n.dialAPI()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// TestRotateCerts: POST /ha/rotate-certs gives every member new member and
// API certificates while the cluster keeps serving: a connection opened
// before still works, new connections see the new API certificate, writes
// through a passive node (forwarded over the consensus port with the new
// member certificates) succeed, and a restarted member starts on what was
// saved.
func TestRotateCerts(t *testing.T) {
	if plainAPI {
		t.Skip("the API certificates are not served in plain mode")
	}
	c := newCluster(t)
	c.boot(3)
	act := c.active(10 * time.Second)
	passive := c.other(act)
	before := map[string][]consensus.CertInfo{}
	apiBefore := map[string]string{}
	for _, n := range c.nodes {
		before[n.id] = n.node.Certificates()
		apiBefore[n.id] = apiSerial(t, n)
		if apiBefore[n.id] != before[n.id][1].Serial {
			t.Fatalf("%s serves API certificate %s, holds %s", n.id, apiBefore[n.id], before[n.id][1].Serial)
		}
	}
	// A kept-alive connection, opened before the rotation.
	kept, err := passive.dialAPI()
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	get := func(conn net.Conn) (int, error) {
		fmt.Fprintf(conn, "GET /api/v1/ha/node HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if st, err := get(kept); err != nil || st != 200 {
		t.Fatalf("kept connection before: %d %v", st, err)
	}
	st, out := c.do(passive, "POST", "/api/v1/ha/rotate-certs", "", nil)
	if st != 200 {
		t.Fatalf("rotate-certs: %d %s", st, out)
	}
	var got []consensus.CertInfo
	if err := json.Unmarshal(out, &got); err != nil || len(got) != 6 {
		t.Fatalf("rotate-certs answer (%v): %s", err, out)
	}
	for _, ci := range got {
		if ci.Error != "" || !ci.Renewed || ci.Serial == "" {
			t.Fatalf("rotate-certs: %+v", ci)
		}
	}
	for _, n := range c.nodes {
		now := n.node.Certificates()
		if now[0].Serial == before[n.id][0].Serial || now[1].Serial == before[n.id][1].Serial {
			t.Fatalf("%s kept a certificate: %+v -> %+v", n.id, before[n.id], now)
		}
		if s := apiSerial(t, n); s != now[1].Serial {
			t.Fatalf("%s serves API certificate %s after the rotation, holds %s", n.id, s, now[1].Serial)
		}
	}
	if st, err := get(kept); err != nil || st != 200 {
		t.Fatalf("kept connection after the rotation: %d %v", st, err)
	}
	// Member traffic on the new certificates: a write through the passive
	// node is forwarded to the active one.
	if st, out := c.do(passive, "PUT", "/api/v1/objects/machine/after-rotation", `{"ok":true}`, nil); st != 200 {
		t.Fatalf("write through %s after the rotation: %d %s", passive.id, st, out)
	}
	// A restart starts on the saved certificates.
	rotated := passive.node.Certificates()
	passive.stop()
	passive.start(false)
	if now := passive.node.Certificates(); now[0].Serial != rotated[0].Serial || now[1].Serial != rotated[1].Serial {
		t.Fatalf("after a restart %s holds %+v, saved %+v", passive.id, now, rotated)
	}
	if st, out := c.do(passive, "PUT", "/api/v1/objects/machine/after-restart", `{"ok":true}`, nil); st != 200 {
		t.Fatalf("write through %s after its restart: %d %s", passive.id, st, out)
	}
	// Only admins rotate.
	st, body := c.do(act, "POST", "/api/v1/tokens", `{"name":"reader","role":"read"}`, nil)
	var info TokenInfo
	if st != 201 || json.Unmarshal(body, &info) != nil {
		t.Fatalf("create a read token: %d %s", st, body)
	}
	tok := info.Token
	if st, _ := c.do(act, "POST", "/api/v1/ha/rotate-certs", "", map[string]string{"Authorization": "Bearer " + tok}); st != 403 {
		t.Fatalf("rotate-certs with a read token: %d, want 403", st)
	}
}

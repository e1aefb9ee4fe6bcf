package healthz

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var (
	active  = Status{NodeID: "n1", Role: "active", InCluster: true, Active: true, Term: 3, LeaderID: "n1", Applied: 10, Commit: 10}
	passive = Status{NodeID: "n2", Role: "passive", InCluster: true, Term: 3, LeaderID: "n1", Applied: 9, Commit: 10, LastContact: 20 * time.Millisecond}
)

func TestChecks(t *testing.T) {
	lagging := passive
	lagging.Applied, lagging.Commit = 10, 2000
	stale := passive
	stale.LastContact = 5 * time.Second
	noLeader := passive
	noLeader.LeaderID = ""
	draining := active
	draining.Draining = true
	observer := passive
	observer.Role = "observer"
	lapsed := active // leader whose lease lapsed: Active is false
	lapsed.Active, lapsed.Role = false, "leader"
	alone := Status{NodeID: "x", Role: "unconfigured", LastContact: -1}
	cases := []struct {
		name string
		s    Status
		want map[string]int
	}{
		{"active", active, map[string]int{"active": 200, "passive": 503, "ready": 200, "live": 200}},
		{"passive", passive, map[string]int{"active": 503, "passive": 200, "ready": 200, "live": 200}},
		{"lagging", lagging, map[string]int{"active": 503, "passive": 503, "ready": 503, "live": 200}},
		{"stale", stale, map[string]int{"active": 503, "passive": 503, "ready": 503, "live": 200}},
		{"no leader", noLeader, map[string]int{"active": 503, "passive": 503, "ready": 503, "live": 200}},
		{"draining", draining, map[string]int{"active": 503, "passive": 503, "ready": 200, "live": 200}},
		{"observer", observer, map[string]int{"active": 503, "passive": 503, "ready": 200, "live": 200}},
		{"lease lapsed", lapsed, map[string]int{"active": 503, "passive": 503, "live": 200}},
		{"not in a cluster", alone, map[string]int{"active": 503, "passive": 503, "ready": 503, "live": 200}},
	}
	for _, c := range cases {
		var observed []string
		h := New(SourceFunc(func() Status { return c.s }), Options{Observe: func(check string, code int) { observed = append(observed, check) }})
		for check, want := range c.want {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz/"+check, nil))
			if rec.Code != want {
				t.Errorf("%s: /healthz/%s = %d, want %d (%s)", c.name, check, rec.Code, want, rec.Body)
			}
			var b Body
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Check != check || b.NodeID != c.s.NodeID || b.OK != (want == 200) {
				t.Errorf("%s: /healthz/%s body %s", c.name, check, rec.Body)
			}
			if want != 200 && b.Reason == "" {
				t.Errorf("%s: /healthz/%s gives no reason", c.name, check)
			}
			head := httptest.NewRecorder()
			h.ServeHTTP(head, httptest.NewRequest("HEAD", "/healthz/"+check, nil))
			if head.Code != want || head.Body.Len() != 0 {
				t.Errorf("%s: HEAD /healthz/%s = %d with %d bytes", c.name, check, head.Code, head.Body.Len())
			}
		}
		if len(observed) != 2*len(c.want) {
			t.Errorf("%s: observed %d answers, want %d", c.name, len(observed), 2*len(c.want))
		}
	}
}

func TestBadRequests(t *testing.T) {
	h := New(SourceFunc(func() Status { return active }), Options{})
	for _, r := range []struct {
		method, path string
		want         int
	}{{"POST", "/healthz/active", 405}, {"DELETE", "/healthz/live", 405}, {"GET", "/healthz/leader", 404}, {"GET", "/healthz/", 404}} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(r.method, r.path, nil))
		if rec.Code != r.want || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if h.Answered() != 0 {
		t.Errorf("refused requests were counted as answers")
	}
}

func TestAgentCheck(t *testing.T) {
	lines := map[string]Status{"up ready 100%\n": active, "down#passive\n": passive, "drain\n": {Active: true, Draining: true, InCluster: true},
		"down#not in a cluster\n": {Role: "unconfigured"}}
	for want, s := range lines {
		if got := AgentLine(s, 100); got != want {
			t.Errorf("AgentLine(%+v) = %q, want %q", s, got, want)
		}
	}
	// Over a real socket, as HAProxy asks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cur := active
	done := make(chan error, 1)
	go func() { done <- ServeAgent(ln, SourceFunc(func() Status { return cur }), 50) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || line != "up ready 50%\n" {
		t.Fatalf("agent answered %q, %v", line, err)
	}
	ln.Close()
	if err := <-done; err != nil {
		t.Fatalf("ServeAgent after close: %v", err)
	}
	if err := ServeAgent(ln, SourceFunc(func() Status { return cur }), 0); err == nil {
		t.Fatal("a zero weight was accepted")
	}
}

func TestMetrics(t *testing.T) {
	m := NewMetrics(SourceFunc(func() Status { return active }), func() []string { return []string{"198.18.0.100/32"} })
	m.LeaderChanged()
	m.ObserveHealth("active", 200)
	m.ObserveApply(3 * time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"raftvip_active 1", `raftvip_role{role="active"} 1`, "raftvip_term 3", "raftvip_commit_index 10",
		"raftvip_leader_changes_total 1", `raftvip_health_answers_total{check="active",code="200"} 1`,
		"raftvip_apply_latency_seconds_count 1", `raftvip_vip_announced{vip="198.18.0.100/32"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// guardServer serves Guard over a ServeMux on a real loopback listener:
// /echo reads its body (through fail on error, as the API does) and
// answers 200 with its length, after an optional pause.
func guardServer(t *testing.T, pause time.Duration) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			fail(w, err)
			return
		}
		if pause > 0 {
			select {
			case <-time.After(pause):
			case <-r.Context().Done():
				writeError(w, http.StatusInternalServerError, "internal", "the request's context ended: "+r.Context().Err().Error())
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]int{"len": len(b)})
	})
	mux.HandleFunc("/ns/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"path": r.URL.Path})
	})
	srv := httptest.NewServer(Guard(mux))
	t.Cleanup(srv.Close)
	return srv
}

// rawRequest writes req on a fresh connection and returns the status line
// and body of the answer, or "" if the server closed the connection first.
func rawRequest(t *testing.T, addr, req string, then func(net.Conn)) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if then != nil {
		then(c)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGuardRefusesUncleanPaths(t *testing.T) {
	srv := guardServer(t, 0)
	addr := srv.Listener.Addr().String()
	for _, p := range []string{"/ns/a/../b", "/ns/../echo", "/ns//b", "/ns/./b", "/ns/%2e%2e/b", "/ns/%2E./b", "//ns/b", "/ns/a/.."} {
		st, body := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", nil)
		var e Error
		if st != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Code != "bad_request" {
			t.Errorf("GET %s: %d %s, want 400 bad_request (not a redirect)", p, st, body)
		}
	}
	for _, p := range []string{"/ns/a/b", "/ns/a/", "/ns/a%20b"} {
		if st, body := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", nil); st != 200 {
			t.Errorf("GET %s: %d %s, want 200", p, st, body)
		}
	}
}

func TestGuardBodyIdleTimeout(t *testing.T) {
	old := bodyIdleTimeout
	bodyIdleTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyIdleTimeout = old })

	// A declared body that stops coming: 408 within the idle timeout (with
	// a generous bound), and the connection does not stay held.
	srv := guardServer(t, 0)
	addr := srv.Listener.Addr().String()
	t0 := time.Now()
	st, body := rawRequest(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", nil)
	if st != 408 || !strings.Contains(body, "request_timeout") {
		t.Fatalf("stalled body: %d %s, want 408", st, body)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("stalled body answered after %v", d)
	}

	// A body that keeps moving, slower than the timeout in total: whole.
	st, body = rawRequest(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n", func(c net.Conn) {
		for i := 0; i < 8; i++ {
			time.Sleep(100 * time.Millisecond) // the pace of a slow client, not a wait for a condition
			fmt.Fprint(c, "x")
		}
	})
	if st != 200 || !strings.Contains(body, `"len":8`) {
		t.Fatalf("slow but moving body: %d %s", st, body)
	}

	// A handler that works on well past the timeout after reading its body
	// keeps its request context.
	srv2 := guardServer(t, 3*bodyIdleTimeout)
	st, body = rawRequest(t, srv2.Listener.Addr().String(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab", nil)
	if st != 200 {
		t.Fatalf("long handler after its body: %d %s", st, body)
	}
}

package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRoutes(t *testing.T) {
	for got, want := range map[string]string{
		Object("machine", "m/1"):         "/api/v1/objects/machine/m%2F1",
		Kind("machine"):                  "/api/v1/objects/machine",
		File("isos", "ubuntu/24.04.iso"): "/api/v1/files/isos/ubuntu/24.04.iso",
		File("files", "a b/c?d"):         "/api/v1/files/files/a%20b/c%3Fd",
		JobLog("build 42"):               "/api/v1/jobs/build%2042/log",
		Member("198.18.0.2:8093"):        "/api/v1/ha/members/198.18.0.2:8093",
		Token("ci"):                      "/api/v1/tokens/ci",
		WithQuery(Kind("m"), nil):        "/api/v1/objects/m",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

// TestDo: JSON both ways with the bearer token; a []byte body as it is and
// a *[]byte answer raw; error answers become *Error with the JSON body's
// message and code, or the text of a non-JSON one.
func TestDo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case HATransfer:
			if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" || string(b) != `{"to":"n2"}` {
				w.WriteHeader(400)
				return
			}
			_, _ = io.WriteString(w, `{"from":"n1","to":"n2"}`)
		case Object("k", "raw"):
			_, _ = w.Write(b)
		case HAState:
			w.WriteHeader(403)
			_, _ = io.WriteString(w, `{"error":"a read token cannot","code":"forbidden"}`)
		default:
			w.WriteHeader(502)
			_, _ = io.WriteString(w, "bad gateway\n")
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/", "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out struct{ From, To string }
	if _, err := c.Do(ctx, "POST", HATransfer, TransferRequest{To: "n2"}, &out); err != nil || out.To != "n2" {
		t.Fatalf("transfer: %+v %v", out, err)
	}
	var raw []byte
	if _, err := c.Do(ctx, "PUT", Object("k", "raw"), []byte(`{"a":1}`), &raw); err != nil || string(raw) != `{"a":1}` {
		t.Fatalf("raw: %q %v", raw, err)
	}
	var e *Error
	if _, err := c.Do(ctx, "GET", HAState, nil, nil); !errors.As(err, &e) || e.Status != 403 || e.Code != "forbidden" || e.Message != "a read token cannot" {
		t.Fatalf("JSON error answer: %v", err)
	}
	if _, err := c.Do(ctx, "GET", HANode, nil, nil); !errors.As(err, &e) || e.Status != 502 || e.Code != "http" || e.Message != "bad gateway" {
		t.Fatalf("plain error answer: %v", err)
	}
	for _, bad := range []string{"", "198.18.0.1:8092", "ftp://x", "https://"} {
		if _, err := New(bad, "", nil); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

package api

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// bodyIdleTimeout is how long a request body may send nothing before the
// request fails with 408: a client that declares a body and stops holds no
// connection for longer, while an upload of any size that keeps moving is
// never cut off. (A variable for tests.)
var bodyIdleTimeout = 15 * time.Second

// Guard wraps a listener's whole handler: a path with a ".", ".." or empty
// segment (also percent-encoded) is refused with 400 before any routing
// (http.ServeMux would otherwise redirect it to the cleaned path, another
// namespace, before the token check), and a request body must make
// progress every bodyIdleTimeout.
func Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if uncleanPath(r.URL.EscapedPath()) || uncleanPath(r.URL.Path) {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("path %q has a '.', '..' or empty segment", r.URL.EscapedPath()))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w)}
		}
		h.ServeHTTP(w, r)
	})
}

// uncleanPath reports a "." or ".." segment (percent-encoded or not) or an
// empty one before the last (a trailing slash is allowed).
func uncleanPath(p string) bool {
	if p == "" || p == "*" {
		return false
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, seg := range segs {
		switch strings.ToLower(seg) {
		case "":
			if i < len(segs)-1 {
				return true
			}
		case ".", "..", "%2e", "%2e%2e", ".%2e", "%2e.":
			return true
		}
	}
	return false
}

// idleBody pushes the connection's read deadline forward before each read.
// Once the body has ended, net/http lifts the deadline for its background
// read; after a timeout it stays, so that the server gives up on the rest
// of the body at once and answers.
type idleBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(bodyIdleTimeout)) // not every writer supports it (tests' recorders)
	return b.ReadCloser.Read(p)
}

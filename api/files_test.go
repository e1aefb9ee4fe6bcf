package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// genData makes n bytes of reproducible pseudo-random data (the same as
// genReader's; a last part shorter than 8 bytes stays zero).
func genData(n int, seed uint64) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(newGenReader(int64(n&^7), seed), b[:n&^7]); err != nil {
		panic(err)
	}
	return b
}

func (c *tcluster) upload(n *tnode, path string, data []byte, hdr map[string]string) (int, []byte) {
	c.t.Helper()
	st, b, _ := c.send(n, "PUT", "/api/v1/files/"+path, bytes.NewReader(data), hdr)
	return st, b
}

// fetch has node n fetch blob sha from its peers (the background sync may
// be at it too: then wait for that).
func (c *tcluster) fetch(n *tnode, sha string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !n.node.Store().HasBlob(sha) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.node.FetchBlob(ctx, sha)
		cancel()
		if err != nil && !errors.Is(err, store.ErrBusy) {
			c.t.Logf("fetch: %v", err)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s never fetched %s", n.id, sha)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raw is doH without a body or trimming the answer (files are bytes, not
// JSON).
func (c *tcluster) raw(n *tnode, method, path string, hdr map[string]string) (int, []byte, http.Header) {
	c.t.Helper()
	return c.send(n, method, path, nil, hdr)
}

// TestFilesReplicatedWhole: an upload through a passive node is streamed to
// the active node, copied to a quorum before it becomes visible, and is
// byte-identical on every node soon after; Range and conditional requests
// work; bad paths and a wrong digest are refused and leave nothing behind.
func TestFilesReplicatedWhole(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	var passive *tnode
	for _, n := range c.nodes {
		if n != act {
			passive = n
		}
	}
	data := genData(24<<20+123, 1)
	sha := shaOf(data)
	st, body := c.upload(passive, "isos/ubuntu/24.04.iso", data, map[string]string{HeaderChecksum: sha, "Content-Type": "application/x-iso9660-image"})
	if st != 200 {
		t.Fatalf("upload: %d %s", st, body)
	}
	var f store.File
	if err := json.Unmarshal(body, &f); err != nil || f.SHA256 != sha || f.Size != int64(len(data)) {
		t.Fatalf("upload answer %s", body)
	}
	// A quorum holds the blob the moment the upload is acknowledged.
	holders := 0
	for _, n := range c.nodes {
		if n.node.Store().HasBlob(sha) {
			holders++
		}
	}
	if holders < 2 {
		t.Fatalf("only %d nodes hold the blob when the upload returned", holders)
	}
	// Every node, soon after.
	c.waitBlobEverywhere(sha, 30*time.Second)
	// Download through the passive node (forwarded) and from the active.
	for _, n := range []*tnode{passive, act} {
		st, got, hdr := c.raw(n, "GET", "/api/v1/files/isos/ubuntu/24.04.iso", nil)
		if st != 200 || !bytes.Equal(got, data) {
			t.Fatalf("download from %s: %d, %d bytes (want %d)", n.id, st, len(got), len(data))
		}
		if hdr.Get("ETag") != `"`+sha+`"` || hdr.Get("Content-Type") != "application/x-iso9660-image" {
			t.Fatalf("download headers %v", hdr)
		}
	}
	st, got, hdr := c.raw(act, "GET", "/api/v1/files/isos/ubuntu/24.04.iso", map[string]string{"Range": "bytes=1000-1999"})
	if st != 206 || !bytes.Equal(got, data[1000:2000]) || hdr.Get("Content-Range") == "" {
		t.Fatalf("range: %d, %d bytes, %v", st, len(got), hdr.Get("Content-Range"))
	}
	size := len(data)
	for rng, want := range map[string]struct {
		st    int
		code  string
		crng  string
		bytes int
	}{
		"bytes=-0":                     {416, "range_not_satisfiable", fmt.Sprintf("bytes */%d", size), 0},
		fmt.Sprintf("bytes=%d-", size): {416, "range_not_satisfiable", fmt.Sprintf("bytes */%d", size), 0},
		"bytes=5-2":                    {400, "bad_request", "", 0},
		"bytes=x-1":                    {400, "bad_request", "", 0},
		"bytes=+1-2":                   {400, "bad_request", "", 0},
		"items=0-1":                    {400, "bad_request", "", 0},
		"bytes=-":                      {400, "bad_request", "", 0},
		"bytes=" + strings.Repeat("0-0,", 16) + "0-0": {400, "bad_request", "", 0},
		"bytes=-10": {206, "", fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size), 10},
	} {
		st, got, hdr := c.raw(act, "GET", "/api/v1/files/isos/ubuntu/24.04.iso", map[string]string{"Range": rng})
		if st != want.st || hdr.Get("Content-Range") != want.crng {
			t.Errorf("Range %s: %d, Content-Range %q; want %d, %q", rng, st, hdr.Get("Content-Range"), want.st, want.crng)
			continue
		}
		var e Error
		if want.code != "" && (json.Unmarshal(got, &e) != nil || e.Code != want.code) {
			t.Errorf("Range %s: body %.80q, want a JSON error %q", rng, got, want.code)
		}
		if want.code == "" && len(got) != want.bytes {
			t.Errorf("Range %s: %d bytes, want %d", rng, len(got), want.bytes)
		}
	}
	if st, _ := c.do(act, "GET", "/api/v1/files/isos/ubuntu/24.04.iso", "", map[string]string{"If-None-Match": `"` + sha + `"`}); st != 304 {
		t.Fatalf("conditional GET: %d, want 304", st)
	}
	// A copy that was interrupted goes on from where it stopped: the passive
	// node loses the blob but keeps its first 5 MiB as a partial copy; the
	// fetch asks for the rest only (a whole answer would be refused) and the
	// result is verified.
	ps := passive.node.Store()
	partial := filepath.Join(passive.dir, "store", "blobs", "tmp", "partial-"+sha)
	// (The partial copy first: once the blob is gone, the background sync
	// may start fetching it at any moment.)
	if err := os.WriteFile(partial, data[:5<<20], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ps.BlobPath(sha)); err != nil {
		t.Fatal(err)
	}
	c.fetch(passive, sha)
	if b, err := os.ReadFile(ps.BlobPath(sha)); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("resumed copy: %d bytes, %v", len(b), err)
	}
	// A partial copy longer than the blob is thrown away and fetched anew.
	if err := os.WriteFile(partial, append(append([]byte{}, data...), "extra"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ps.BlobPath(sha)); err != nil {
		t.Fatal(err)
	}
	c.fetch(passive, sha)
	if b, err := os.ReadFile(ps.BlobPath(sha)); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("copy after a bad partial: %d bytes, %v", len(b), err)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("partial copy left behind: %v", err)
	}
	// Bad paths and a wrong digest: 400, and nothing visible or applied.
	applied, _ := act.node.Store().Applied()
	for _, p := range []string{"files/..%2Fescape", "files/a/../b", "files/%2Fabs", "files/a%00b", "files/a//b", "nowhere/x", "files/" + strings.Repeat("x", 300)} {
		if st, body := c.upload(act, p, []byte("x"), nil); st != 400 {
			t.Errorf("upload to %q: %d %s, want 400", p, st, body)
		}
	}
	if st, body := c.upload(act, "files/bad-digest", []byte("hello"), map[string]string{HeaderChecksum: sha}); st != 400 || !strings.Contains(string(body), "digest") {
		t.Errorf("wrong digest: %d %s", st, body)
	}
	if st, _ := c.do(act, "GET", "/api/v1/files/files/bad-digest", "", nil); st != 404 {
		t.Errorf("a refused upload is visible: %d", st)
	}
	// Headers that contradict each other or are malformed: 400.
	other := genData(1<<20, 9)
	otherSum := sha256.Sum256(other)
	for name, hdr := range map[string]map[string]string{
		"digests disagree":    {HeaderChecksum: sha, "Content-Digest": "sha-256=:" + base64.StdEncoding.EncodeToString(otherSum[:]) + ":"},
		"digest without ':'":  {"Content-Digest": "sha-256=" + base64.StdEncoding.EncodeToString(otherSum[:])},
		"digest not a list":   {"Content-Digest": "garbage"},
		"checksum not hex":    {HeaderChecksum: "xyz"},
		"weak If-Match":       {"If-Match": `W/"1"`},
		"both preconditions":  {"If-Match": `"1"`, "If-None-Match": "*"},
		"If-None-Match a tag": {"If-None-Match": `"abc"`},
	} {
		if st, body := c.upload(act, "files/other", other, hdr); st != 400 {
			t.Errorf("%s: %d %s, want 400", name, st, body)
		}
	}
	// A precondition that fails is refused before the body is stored or
	// copied anywhere.
	if st, body := c.upload(passive, "isos/ubuntu/24.04.iso", other, map[string]string{"If-None-Match": "*"}); st != 412 {
		t.Errorf("If-None-Match: * on an existing file: %d %s, want 412", st, body)
	}
	if st, body := c.upload(act, "files/other", other, map[string]string{"If-Match": `"7"`}); st != 412 {
		t.Errorf("If-Match on a missing file: %d %s, want 412", st, body)
	}
	for _, n := range c.nodes {
		if n.node.Store().HasBlob(hex.EncodeToString(otherSum[:])) {
			t.Errorf("%s stored the body of a refused upload", n.id)
		}
	}
	if now, _ := act.node.Store().Applied(); now != applied {
		t.Errorf("refused uploads changed the applied index %d -> %d", applied, now)
	}
	// List and delete.
	st, body = c.do(passive, "GET", "/api/v1/files/isos?prefix=ubuntu/", "", nil)
	if st != 200 || !strings.Contains(string(body), `"path":"ubuntu/24.04.iso"`) {
		t.Fatalf("list: %d %s", st, body)
	}
	if st, body := c.do(passive, "DELETE", "/api/v1/files/isos/ubuntu/24.04.iso", "", nil); st != 200 {
		t.Fatalf("delete: %d %s", st, body)
	}
	if st, _ := c.do(act, "GET", "/api/v1/files/isos/ubuntu/24.04.iso", "", nil); st != 404 {
		t.Fatalf("deleted file still served: %d", st)
	}
}

// TestFileUploadInterruptedByFailover: the active node dies in the middle
// of an upload; the client gets an error, nothing is visible, and the retry
// on the new active node succeeds.
func TestFileUploadInterruptedByFailover(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	data := genData(8<<20, 2)
	pw, done := c.pipeUpload(act, "files/big.bin")
	if _, err := pw.Write(data[:4<<20]); err != nil {
		t.Fatal(err)
	}
	act.stop()
	pw.CloseWithError(io.ErrUnexpectedEOF)
	if a := <-done; a.err == nil && a.st == 200 {
		t.Fatalf("the interrupted upload succeeded: %s", a.body)
	}
	neu := c.active(10 * time.Second)
	if st, _ := c.do(neu, "GET", "/api/v1/files/files/big.bin", "", nil); st != 404 {
		t.Fatalf("the interrupted upload is visible: %d", st)
	}
	if st, body := c.upload(neu, "files/big.bin", data, nil); st != 200 {
		t.Fatalf("retry: %d %s", st, body)
	}
	st, got, _ := c.raw(neu, "GET", "/api/v1/files/files/big.bin", nil)
	if st != 200 || !bytes.Equal(got, data) {
		t.Fatalf("after retry: %d, %d bytes", st, len(got))
	}
}

// pipeAnswer is what an upload fed through a pipe got.
type pipeAnswer struct {
	st   int
	body []byte
	err  error
}

// pipeUpload starts an upload to node n whose body is written through the
// returned pipe; the answer arrives on the channel.
func (c *tcluster) pipeUpload(n *tnode, path string) (*io.PipeWriter, <-chan pipeAnswer) {
	pr, pw := io.Pipe()
	done := make(chan pipeAnswer, 1)
	go func() {
		req, _ := http.NewRequest("PUT", n.url+"/api/v1/files/"+path, pr)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := httpClient.Do(req)
		if err != nil {
			done <- pipeAnswer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- pipeAnswer{st: resp.StatusCode, body: b}
	}()
	return pw, done
}

// tmpUploads is how many bytes node n holds in uploads under way.
func tmpUploads(n *tnode) int64 {
	var total int64
	entries, _ := os.ReadDir(filepath.Join(n.dir, "store", "blobs", "tmp"))
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "upload-") {
			total += info.Size()
		}
	}
	return total
}

// TestFileUploadFollowerDies: during an upload only the one follower a
// quorum needs receives it; when that follower dies in the middle, the
// other one gets the upload from the start, the upload succeeds, and both
// survivors hold it.
func TestFileUploadFollowerDies(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	data := genData(8<<20, 3)
	pw, done := c.pipeUpload(act, "files/f.bin")
	if _, err := pw.Write(data[:4<<20]); err != nil {
		t.Fatal(err)
	}
	// Find the follower that receives it; the other must receive nothing.
	var sync, other *tnode
	deadline := time.Now().Add(10 * time.Second)
	for sync == nil {
		for _, n := range c.nodes {
			if n != act && tmpUploads(n) >= 4<<20 {
				sync = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no follower received the first 4 MiB")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, n := range c.nodes {
		if n != act && n != sync {
			other = n
		}
	}
	if got := tmpUploads(other); got != 0 {
		t.Fatalf("the follower a quorum does not need received %d bytes during the upload", got)
	}
	sync.stop()
	if _, err := pw.Write(data[4<<20:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	a := <-done
	if a.err != nil || a.st != 200 {
		t.Fatalf("upload with the receiving follower dead: %d %s %v", a.st, a.body, a.err)
	}
	sha := shaOf(data)
	for _, n := range []*tnode{act, other} {
		if !n.node.Store().HasBlob(sha) {
			t.Fatalf("%s does not hold the upload", n.id)
		}
	}
	// Its own copy, once it has applied the record.
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, got, _ := c.raw(other, "GET", "/api/v1/files/files/f.bin?stale", nil)
		if st == 200 && bytes.Equal(got, data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the surviving follower's copy: %d, %d bytes", st, len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestCutOffChunkedUpload: a chunked upload that sends two 4 KiB chunks and
// part of a third, then drops the connection, stores nothing anywhere, on the
// active node and through a passive one.
func TestCutOffChunkedUpload(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	act := c.active(5 * time.Second)
	var passive *tnode
	for _, n := range c.nodes {
		if n != act {
			passive = n
		}
	}
	for _, via := range []*tnode{act, passive} {
		path := "/api/v1/files/files/cut-" + via.id
		conn, err := via.dialAPI()
		if err != nil {
			t.Fatal(err)
		}
		chunk := bytes.Repeat([]byte("x"), 4096)
		fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, via.apiAddr, c.token)
		for i := 0; i < 2; i++ {
			fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		fmt.Fprintf(conn, "%x\r\n%s", len(chunk), chunk[:100])
		conn.Close()
		// A node that took the cut body for a whole one commits it within
		// milliseconds: watch every node for two seconds.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			for _, n := range c.nodes {
				if _, err := n.node.Store().GetFile("files", "cut-"+via.id); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("upload cut off via %s: %s has the file (%v)", via.id, n.id, err)
				}
			}
		}
		if st, body := c.do(act, "GET", path, "", nil); st != 404 {
			t.Fatalf("upload cut off via %s: GET %d %s", via.id, st, body)
		}
	}
}

// TestUnknownOutcomeAnswer: a write whose outcome is unknown gets 504 with
// code outcome_unknown; a refusal made before proposing gets 503.
func TestUnknownOutcomeAnswer(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: leadership lost while committing log", consensus.ErrUnknownOutcome), 504, CodeOutcomeUnknown},
		{fmt.Errorf("%w: node is not the leader", consensus.ErrNotLeader), 503, "no_leader"},
		{fmt.Errorf("%w: timed out enqueuing operation", consensus.ErrTimeout), 503, "timeout"},
	} {
		rec := httptest.NewRecorder()
		fail(rec, tc.err)
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != tc.status || e.Code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, rec.Code, rec.Body, tc.status, tc.code)
		}
	}
}

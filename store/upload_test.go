package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestUploadReaders: readers follow an upload as it grows, end with EOF
// once it is committed and fail once it is aborted; nothing is left of an
// aborted upload.
func TestUploadReaders(t *testing.T) {
	s := testStore(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	u, err := s.NewUpload(0)
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := u.NewReader()
	r2, _ := u.NewReader()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r1)
		got <- b
	}()
	// r2 reads the first part while the rest is still to come.
	if _, err := u.Write(data[:1000]); err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 1000)
	if _, err := io.ReadFull(r2, first); err != nil || !bytes.Equal(first, data[:1000]) {
		t.Fatalf("reading while the upload grows: %v", err)
	}
	if _, err := u.Write(data[1000:]); err != nil {
		t.Fatal(err)
	}
	sha, n, err := u.Commit(shaOf(data))
	if err != nil || n != int64(len(data)) || sha != shaOf(data) {
		t.Fatalf("commit: %s %d %v", sha, n, err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("reader got %d bytes", len(b))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader never ended")
	}
	rest, err := io.ReadAll(r2)
	if err != nil || !bytes.Equal(rest, data[1000:]) {
		t.Fatalf("second reader: %d bytes, %v", len(rest), err)
	}
	r1.Close()
	r2.Close()
	if !s.HasBlob(sha) {
		t.Fatal("committed blob missing")
	}

	// Aborted: a waiting reader fails with the cause; no file is left.
	u, _ = s.NewUpload(0)
	r, _ := u.NewReader()
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(r)
		errc <- err
	}()
	_, _ = u.Write([]byte("partial"))
	cause := errors.New("client went away")
	u.Abort(cause)
	select {
	case err := <-errc:
		if !errors.Is(err, cause) {
			t.Fatalf("reader of an aborted upload: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader of an aborted upload never returned")
	}
	r.Close()
	if left, _ := os.ReadDir(filepath.Join(s.blobDir(), "tmp")); len(left) != 0 {
		t.Fatalf("aborted upload left %d files", len(left))
	}
	// A reader closed while it waits returns at once.
	u, _ = s.NewUpload(0)
	r, _ = u.NewReader()
	go func() {
		_, err := r.Read(make([]byte, 10))
		errc <- err
	}()
	time.AfterFunc(50*time.Millisecond, func() { r.Close() })
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("read on a closed reader succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("closing a waiting reader did not wake it")
	}
	u.Abort(nil)
	// The limit.
	u, _ = s.NewUpload(10)
	if _, err := u.Write(make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("write past the limit: %v", err)
	}
	u.Abort(nil)
}

// TestResumeBlob: an interrupted copy keeps its bytes and the next try goes
// on from there; a kept prefix that does not match fails the digest and is
// removed; one copy of a blob at a time.
func TestResumeBlob(t *testing.T) {
	s := testStore(t)
	data := bytes.Repeat([]byte("raftvip resumes "), 1<<15)
	sha := shaOf(data)
	u, err := s.ResumeBlob(sha)
	if err != nil || u.Offset() != 0 {
		t.Fatalf("first try: %v offset %d", err, u.Offset())
	}
	if _, err := s.ResumeBlob(sha); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second copy of the same blob at once: %v", err)
	}
	_, _ = u.Write(data[:300000])
	u.Abort(errors.New("connection reset"))
	if s.HasBlob(sha) {
		t.Fatal("an interrupted copy is visible")
	}
	if u, err = s.ResumeBlob(sha); err != nil {
		t.Fatal(err)
	}
	if u.Offset() != 300000 {
		t.Fatalf("resumed at %d, want 300000", u.Offset())
	}
	_, _ = u.Write(data[300000:])
	if got, n, err := u.Commit(sha); err != nil || got != sha || n != int64(len(data)) {
		t.Fatalf("resumed copy: %s %d %v", got, n, err)
	}
	if !s.HasBlob(sha) {
		t.Fatal("resumed blob missing")
	}

	// A kept prefix of something else: the digest fails, nothing is kept.
	other := bytes.Repeat([]byte("x"), 1000)
	osha := shaOf(other)
	if u, err = s.ResumeBlob(osha); err != nil {
		t.Fatal(err)
	}
	_, _ = u.Write([]byte("not a prefix"))
	u.Abort(nil)
	if u, err = s.ResumeBlob(osha); err != nil {
		t.Fatal(err)
	}
	_, _ = u.Write(other[u.Offset():])
	if _, _, err := u.Commit(osha); !errors.Is(err, ErrDigest) {
		t.Fatalf("a corrupt kept prefix: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.blobDir(), "tmp", "partial-"+osha)); !os.IsNotExist(err) {
		t.Fatalf("corrupt partial copy kept: %v", err)
	}
}

// TestFileLag: committed files whose contents are not here count, once per
// blob, with their size; a copy under way counts as fetched.
func TestFileLag(t *testing.T) {
	s := testStore(t)
	data := bytes.Repeat([]byte("lag "), 1000)
	sha := shaOf(data)
	other := strings.Repeat("cd", 32)
	for i, f := range []FileRef{
		{Namespace: "isos", Path: "a.iso", SHA256: sha, Size: int64(len(data))},
		{Namespace: "isos", Path: "same-contents.iso", SHA256: sha, Size: int64(len(data))},
		{Namespace: "files", Path: "b", SHA256: other, Size: 500},
	} {
		cmd := Command{Op: OpFilePut, File: &f, Time: 1}
		if res := s.ApplyBatch([]Entry{{Index: uint64(i + 1), Term: 1, Data: enc(t, cmd)}})[0]; res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	lag, err := s.FileLag()
	if err != nil || lag != (FileLag{Files: 2, Bytes: int64(len(data)) + 500}) {
		t.Fatalf("nothing here: %+v %v", lag, err)
	}
	u, err := s.ResumeBlob(sha)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = u.Write(data[:1200])
	u.Abort(nil)
	if lag, _ = s.FileLag(); lag.Fetched != 1200 || lag.Files != 2 {
		t.Fatalf("a copy under way: %+v", lag)
	}
	if _, _, err := s.PutBlob(bytes.NewReader(data), sha, 0); err != nil {
		t.Fatal(err)
	}
	if lag, _ = s.FileLag(); lag != (FileLag{Files: 1, Bytes: 500}) {
		t.Fatalf("one blob here: %+v", lag)
	}
}

// TestReceiveBlob: a pushed copy excludes a fetch of the same blob and the
// other way round; it starts from the first byte whatever a fetch kept, and
// what an interrupted push leaves is kept for a fetch to go on from.
func TestReceiveBlob(t *testing.T) {
	s := testStore(t)
	data := bytes.Repeat([]byte("pushed "), 50000)
	sha := shaOf(data)
	fetch, err := s.ResumeBlob(sha)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReceiveBlob(bytes.NewReader(data), sha, 0); !errors.Is(err, ErrBusy) {
		t.Fatalf("a push while a fetch runs: %v", err)
	}
	_, _ = fetch.Write([]byte("a kept part that is not a prefix"))
	fetch.Abort(nil)
	// An interrupted push keeps what it received.
	if _, _, err := s.ReceiveBlob(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(errors.New("connection reset"))), sha, 0); err == nil {
		t.Fatal("an interrupted push succeeded")
	}
	u, err := s.ResumeBlob(sha)
	if err != nil || u.Offset() != 1000 {
		t.Fatalf("after an interrupted push: offset %d, %v", u.Offset(), err)
	}
	u.Abort(nil)
	// A whole push replaces the kept part.
	if got, n, err := s.ReceiveBlob(bytes.NewReader(data), sha, 0); err != nil || got != sha || n != int64(len(data)) {
		t.Fatalf("push: %s %d %v", got, n, err)
	}
	if !s.HasBlob(sha) {
		t.Fatal("pushed blob missing")
	}
}

// TestCutOffBodyIsNoBlob: a body that ends with io.ErrUnexpectedEOF (what
// net/http yields for a chunked body cut off mid-way, or a Content-Length
// that was not met) is an error, never a whole blob: on an upload whose
// digest is not known in advance, and on a member's unnamed blob stream.
func TestCutOffBodyIsNoBlob(t *testing.T) {
	s := testStore(t)
	data := bytes.Repeat([]byte("chunk "), 3000)
	cut := func() io.Reader {
		return io.MultiReader(bytes.NewReader(data[:8192]), iotest.ErrReader(io.ErrUnexpectedEOF))
	}
	u, err := s.NewUpload(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(u, cut()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("copying a cut-off body into an upload: %v, want io.ErrUnexpectedEOF", err)
	}
	u.Abort(err)
	if sha, _, err := s.PutBlob(cut(), "", 0); err == nil {
		t.Fatalf("a cut-off unnamed blob was stored as %s", sha)
	}
	if blobs, _ := os.ReadDir(filepath.Join(s.dir, "blobs")); len(blobs) > 1 { // only tmp/
		t.Fatalf("blobs left after cut-off bodies: %v", blobs)
	}
	// A short last read that ends with io.EOF is a whole body.
	if sha, n, err := s.PutBlob(iotest.OneByteReader(bytes.NewReader(data)), "", 0); err != nil || sha != shaOf(data) || n != int64(len(data)) {
		t.Fatalf("whole body read a byte at a time: %s %d %v", sha, n, err)
	}
}

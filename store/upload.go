package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Upload is a blob being written. Its bytes go to a temporary file, are
// hashed on the way and handed to the kernel's writeback as they arrive (so
// that the final fsync finds little left to write and dirty pages stay
// bounded); readers made with NewReader follow the file as it grows, each
// at its own pace, which lets an upload be streamed to other nodes without
// the slowest of them holding it back and without holding data in memory.
// Commit verifies, syncs and names the blob; Abort discards it.
type Upload struct {
	s       *Store
	f       *os.File
	tmp     string
	h       hash.Hash
	limit   int64 // <= 0: none
	keep    bool  // a resumable partial copy: kept on Abort unless corrupt
	onDone  func()
	flushed int64 // bytes handed to writeback

	mu   sync.Mutex
	cond *sync.Cond
	n    int64 // bytes written
	done bool  // committed or aborted: no more bytes
	err  error // why it was aborted
}

// Writeback: every writebackChunk bytes the kernel is asked to start
// writing them, and the chunk writebackLag bytes back is waited for.
const (
	writebackChunk = 8 << 20
	writebackLag   = 64 << 20
)

// NewUpload starts a blob of at most limit bytes (limit <= 0: no limit).
func (s *Store) NewUpload(limit int64) (*Upload, error) {
	tmpDir := filepath.Join(s.blobDir(), "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(tmpDir, "upload-*")
	if err != nil {
		return nil, err
	}
	u := &Upload{s: s, f: f, tmp: f.Name(), h: sha256.New(), limit: limit}
	u.cond = sync.NewCond(&u.mu)
	return u, nil
}

// ErrBusy means another copy of the same blob is under way.
var ErrBusy = errors.New("a copy of this blob is already under way")

// ResumeBlob starts (or takes up again) a copy of the blob sha that is kept
// when it is interrupted: the bytes an earlier try left are hashed again
// and Offset says where the rest must start. Only one copy of a blob is
// resumed at a time (ErrBusy).
func (s *Store) ResumeBlob(sha string) (*Upload, error) {
	if err := ValidSHA256(sha); err != nil {
		return nil, err
	}
	s.bmu.Lock()
	if s.resuming == nil {
		s.resuming = map[string]bool{}
	}
	if s.resuming[sha] {
		s.bmu.Unlock()
		return nil, ErrBusy
	}
	s.resuming[sha] = true
	s.bmu.Unlock()
	release := func() {
		s.bmu.Lock()
		delete(s.resuming, sha)
		s.bmu.Unlock()
	}
	tmpDir := filepath.Join(s.blobDir(), "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		release()
		return nil, err
	}
	name := filepath.Join(tmpDir, "partial-"+sha)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		release()
		return nil, err
	}
	u := &Upload{s: s, f: f, tmp: name, h: sha256.New(), keep: true}
	u.cond = sync.NewCond(&u.mu)
	n, err := io.Copy(u.h, f) // leaves the offset at the end
	if err != nil {
		f.Close()
		release()
		return nil, err
	}
	u.n, u.flushed = n, n
	u.onDone = release
	return u, nil
}

// Offset is how many bytes the upload holds.
func (u *Upload) Offset() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// Write appends p. Past the limit it fails with ErrTooLarge.
func (u *Upload) Write(p []byte) (int, error) {
	u.mu.Lock()
	n, done := u.n, u.done
	u.mu.Unlock()
	if done {
		return 0, errors.New("upload already finished")
	}
	if u.limit > 0 && n+int64(len(p)) > u.limit {
		return 0, ErrTooLarge
	}
	k, err := u.f.Write(p)
	u.h.Write(p[:k])
	if n+int64(k)-u.flushed >= writebackChunk {
		var waitOff, waitN int64
		if u.flushed >= writebackLag {
			waitOff, waitN = u.flushed-writebackLag, writebackChunk
		}
		writeback(u.f, u.flushed, n+int64(k)-u.flushed, waitOff, waitN)
		u.flushed = n + int64(k)
	}
	u.mu.Lock()
	u.n += int64(k)
	u.mu.Unlock()
	u.cond.Broadcast()
	return k, err
}

// Commit ends the upload: the bytes must hash to want, if it is not empty
// (ErrDigest otherwise). The blob is synced and appears under its name; the
// SHA-256 and size are returned. On error the upload is aborted.
func (u *Upload) Commit(want string) (string, int64, error) {
	sha := hex.EncodeToString(u.h.Sum(nil))
	u.mu.Lock()
	n := u.n
	u.mu.Unlock()
	if want != "" && sha != want {
		err := fmt.Errorf("%w: got %s, want %s", ErrDigest, sha, want)
		u.abort(err, false)
		return "", 0, err
	}
	if err := u.f.Sync(); err != nil {
		u.Abort(err)
		return "", 0, err
	}
	dst := u.s.BlobPath(sha)
	err := os.MkdirAll(filepath.Dir(dst), 0o700)
	if err == nil {
		err = os.Rename(u.tmp, dst)
	}
	if err == nil {
		err = syncDir(filepath.Dir(dst))
	}
	if err != nil {
		u.abort(err, false)
		return "", 0, err
	}
	u.f.Close()
	u.finish(nil)
	return sha, n, nil
}

// Abort discards the upload (a resumable copy keeps its bytes for the next
// try). Readers get err.
func (u *Upload) Abort(err error) { u.abort(err, u.keep) }

// Discard aborts the upload and removes its bytes, even those of a
// resumable copy.
func (u *Upload) Discard(err error) { u.abort(err, false) }

func (u *Upload) abort(err error, keep bool) {
	if err == nil {
		err = errors.New("upload aborted")
	}
	u.mu.Lock()
	done := u.done
	u.mu.Unlock()
	if done {
		return
	}
	if keep {
		_ = u.f.Sync()
	}
	u.f.Close()
	if !keep {
		os.Remove(u.tmp)
	}
	u.finish(err)
}

func (u *Upload) finish(err error) {
	u.mu.Lock()
	u.done, u.err = true, err
	u.mu.Unlock()
	u.cond.Broadcast()
	if u.onDone != nil {
		u.onDone()
	}
}

// NewReader returns a reader of the upload's bytes from the start that
// waits for more while the upload goes on, ends with io.EOF once it is
// committed and read whole, and fails with the upload's error if it is
// aborted. Call it before Commit or Abort; Close it when done.
func (u *Upload) NewReader() (io.ReadCloser, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, errors.New("upload already finished")
	}
	f, err := os.Open(u.tmp)
	if err != nil {
		return nil, err
	}
	return &tailReader{u: u, f: f}, nil
}

type tailReader struct {
	u      *Upload
	f      *os.File
	off    int64
	closed bool // under u.mu
}

func (r *tailReader) Read(p []byte) (int, error) {
	u := r.u
	u.mu.Lock()
	for r.off >= u.n && !u.done && !r.closed {
		u.cond.Wait()
	}
	n, err, closed := u.n, u.err, r.closed
	u.mu.Unlock()
	switch {
	case closed:
		return 0, os.ErrClosed
	case err != nil:
		return 0, err
	case r.off >= n:
		return 0, io.EOF
	}
	if int64(len(p)) > n-r.off {
		p = p[:n-r.off]
	}
	k, err := r.f.ReadAt(p, r.off)
	r.off += int64(k)
	if err == io.EOF && k > 0 {
		err = nil
	}
	return k, err
}

func (r *tailReader) Close() error {
	r.u.mu.Lock()
	if r.closed {
		r.u.mu.Unlock()
		return nil
	}
	r.closed = true
	r.u.mu.Unlock()
	r.u.cond.Broadcast()
	return r.f.Close()
}

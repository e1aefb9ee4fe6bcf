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
	"sync/atomic"
)

// Upload is a blob being written. Its bytes go to a temporary file, are
// hashed on the way and written back to the disk in paced chunks as they
// arrive (see paceChunk); readers made with NewReader follow the file as it grows, each
// at its own pace, which lets an upload be streamed to other nodes without
// the slowest of them holding it back and without holding data in memory.
// Commit verifies, syncs and names the blob; Abort discards it.
type Upload struct {
	s      *Store
	f      *os.File
	tmp    string
	h      hash.Hash
	limit  int64 // <= 0: none
	keep   bool  // a resumable partial copy: kept on Abort unless corrupt
	onDone func()
	paced  int64 // bytes whose writeback was started (see pace)

	mu   sync.Mutex
	cond *sync.Cond
	n    int64 // bytes written
	done bool  // committed or aborted: no more bytes
	err  error // why it was aborted
}

// paceChunk: every this many bytes an upload starts the writeback of what
// it wrote and waits for the chunk before it to reach the disk (see pace).
// An upload so never holds more than two chunks of dirty pages, the disk
// works while the upload streams in, and the final sync in Commit finds at
// most two chunks left. Without it the kernel let hundreds of MiB of an
// upload's pages pile up and then wrote them out in one burst, and the Raft
// log's fsync on a follower (which its heartbeat answers wait on) queued
// behind that burst for long enough to cost the leader its lease.
const paceChunk = 8 << 20

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
	u.n, u.paced = n, n
	u.onDone = release
	return u, nil
}

// ReceiveBlob stores a copy of blob sha that a member pushes, from its
// first byte; at most limit bytes are read (limit <= 0: no limit). It
// excludes a fetch of the same blob (ErrBusy either way), so that a node is
// never sent one blob twice at once; a part an earlier fetch kept is
// dropped, and a part this copy leaves is kept for the next fetch.
func (s *Store) ReceiveBlob(r io.Reader, sha string, limit int64) (string, int64, error) {
	if s.HasBlob(sha) {
		return s.PutBlob(r, sha, limit)
	}
	u, err := s.ResumeBlob(sha)
	if err != nil {
		return "", 0, err
	}
	if u.Offset() > 0 {
		if err := u.restart(); err != nil {
			u.Discard(err)
			return "", 0, err
		}
	}
	if _, err := io.Copy(u, limited(r, limit)); err != nil {
		u.Abort(err)
		return "", 0, fmt.Errorf("reading blob: %w", err)
	}
	return u.Commit(sha)
}

// restart empties an upload that has no readers yet.
func (u *Upload) restart() error {
	if err := u.f.Truncate(0); err != nil {
		return err
	}
	if _, err := u.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	u.h.Reset()
	u.mu.Lock()
	u.n, u.paced = 0, 0
	u.mu.Unlock()
	return nil
}

// Offset is how many bytes the upload holds.
func (u *Upload) Offset() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.n
}

// Write appends p. Past the limit it fails with ErrTooLarge.
func (u *Upload) Write(p []byte) (int, error) {
	k, err := u.write(p)
	u.h.Write(p[:k])
	return k, err
}

// write appends p to the file without hashing it.
func (u *Upload) write(p []byte) (int, error) {
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
	if end := n + int64(k); end-u.paced >= paceChunk {
		pace(u.f, u.paced, end)
		u.paced = end
	}
	u.mu.Lock()
	u.n += int64(k)
	u.mu.Unlock()
	u.cond.Broadcast()
	return k, err
}

// ReadFrom appends what r yields, in writes of up to uploadBuffer bytes.
// Only io.EOF ends it cleanly: any other error, io.ErrUnexpectedEOF among
// them (a chunked body cut off mid-way, a Content-Length that was not met),
// is returned, so that a cut-off body is never taken for a whole one.
func (u *Upload) ReadFrom(r io.Reader) (int64, error) {
	bp := uploadBuffers.Get().(*[]byte)
	defer uploadBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		k, rerr := fill(r, buf)
		if k > 0 {
			w, err := u.Write(buf[:k])
			total += int64(w)
			if err != nil {
				return total, err
			}
		}
		switch rerr {
		case nil:
		case io.EOF:
			return total, nil
		default:
			return total, rerr
		}
	}
}

// fill reads into buf until it is full or r fails. Unlike io.ReadFull it
// hands back r's own error unchanged: io.ReadFull turns an early io.EOF into
// io.ErrUnexpectedEOF and so cannot tell a clean end from a cut-off one.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// uploadBuffer is the size of the writes ReadFrom makes: large writes cost
// the kernel less per byte than io.Copy's 32 KiB.
const uploadBuffer = 1 << 20

var uploadBuffers = sync.Pool{New: func() any { b := make([]byte, uploadBuffer); return &b }}

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
func (u *Upload) NewReader() (*UploadReader, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, errors.New("upload already finished")
	}
	f, err := os.Open(u.tmp)
	if err != nil {
		return nil, err
	}
	return &UploadReader{u: u, f: f}, nil
}

// UploadReader reads an upload while it grows (see NewReader).
type UploadReader struct {
	u      *Upload
	f      *os.File
	off    atomic.Int64
	closed bool // under u.mu
}

// Offset is how many bytes have been read.
func (r *UploadReader) Offset() int64 { return r.off.Load() }

// Read reads what the upload holds past what was read, waiting for more.
func (r *UploadReader) Read(p []byte) (int, error) {
	u := r.u
	u.mu.Lock()
	off := r.off.Load()
	for off >= u.n && !u.done && !r.closed {
		u.cond.Wait()
	}
	n, err, closed := u.n, u.err, r.closed
	u.mu.Unlock()
	switch {
	case closed:
		return 0, os.ErrClosed
	case err != nil:
		return 0, err
	case off >= n:
		return 0, io.EOF
	}
	if int64(len(p)) > n-off {
		p = p[:n-off]
	}
	k, err := r.f.ReadAt(p, off)
	r.off.Add(int64(k))
	if err == io.EOF && k > 0 {
		err = nil
	}
	return k, err
}

// Close ends the reader; a Read waiting for data returns at once.
func (r *UploadReader) Close() error {
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

package store

import (
	"crypto/sha256"
	"time"

	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Blobs are files' contents, stored once each under their SHA-256 in the
// blobs/ folder beside the database, immutable once written. They never go
// through the Raft log: the log carries only a file record naming a blob
// (OpFilePut), committed after a quorum holds the verified blob.

// ErrDigest means data did not match the SHA-256 it was announced with.
var ErrDigest = errors.New("SHA-256 mismatch")

// Namespaces of files.
var Namespaces = map[string]bool{"files": true, "isos": true, "bundles": true, "plugins": true}

// Limits on file paths.
const (
	MaxPathLen    = 1024
	MaxSegmentLen = 255
)

var shaRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidSHA256 checks a lower-case hex SHA-256.
func ValidSHA256(s string) error {
	if !shaRE.MatchString(s) {
		return fmt.Errorf("%w: %q is not a lower-case hex SHA-256", ErrInvalid, s)
	}
	return nil
}

// ValidNamespace checks a file namespace.
func ValidNamespace(ns string) error {
	if !Namespaces[ns] {
		return fmt.Errorf("%w: namespace %q must be files, isos, bundles or plugins", ErrInvalid, ns)
	}
	return nil
}

// CleanFilePath checks a file path inside its namespace and returns it in
// normal form. It refuses what could escape the namespace or confuse a
// filesystem: absolute paths, "." and ".." segments, empty segments,
// backslashes, NUL and control characters, invalid UTF-8, over-long names.
func CleanFilePath(ns, p string) (string, error) {
	if err := ValidNamespace(ns); err != nil {
		return "", err
	}
	if p == "" || len(p) > MaxPathLen {
		return "", fmt.Errorf("%w: path must be 1 to %d bytes", ErrInvalid, MaxPathLen)
	}
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("%w: path is not valid UTF-8", ErrInvalid)
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: path %q is absolute", ErrInvalid, p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return "", fmt.Errorf("%w: path %q has an empty segment", ErrInvalid, p)
		case seg == "." || seg == "..":
			return "", fmt.Errorf("%w: path %q has a %q segment", ErrInvalid, p, seg)
		case len(seg) > MaxSegmentLen:
			return "", fmt.Errorf("%w: a segment of %q is longer than %d bytes", ErrInvalid, p, MaxSegmentLen)
		}
		for _, r := range seg {
			if IsControl(r) || r == '\\' || bidiControl(r) {
				return "", fmt.Errorf("%w: path %q contains a forbidden character %q", ErrInvalid, p, r)
			}
		}
	}
	return p, nil
}

func (s *Store) blobDir() string { return filepath.Join(s.dir, "blobs") }

// BlobPath is where the blob with this SHA-256 lives (it may not exist).
func (s *Store) BlobPath(sha string) string {
	return filepath.Join(s.blobDir(), sha[:2], sha)
}

// HasBlob reports whether the blob is here, whole.
func (s *Store) HasBlob(sha string) bool {
	if ValidSHA256(sha) != nil {
		return false
	}
	_, err := os.Stat(s.BlobPath(sha))
	return err == nil
}

// PutBlob streams r into the blob store and returns its SHA-256 and size.
// If want is not empty the data must hash to it (ErrDigest otherwise) and at
// most limit bytes are read (limit <= 0: no limit). The blob appears under
// its name only when it is whole and synced; memory use does not depend on
// its size.
func (s *Store) PutBlob(r io.Reader, want string, limit int64) (string, int64, error) {
	if want != "" {
		if err := ValidSHA256(want); err != nil {
			return "", 0, err
		}
		if s.HasBlob(want) {
			// Still read (and verify) the stream: the caller expects it consumed.
			h := sha256.New()
			n, err := io.Copy(h, limited(r, limit))
			if err != nil {
				return "", 0, fmt.Errorf("reading blob: %w", err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want {
				return "", 0, fmt.Errorf("%w: got %s, want %s", ErrDigest, got, want)
			}
			return want, n, nil
		}
	}
	u, err := s.NewUpload(0)
	if err != nil {
		return "", 0, err
	}
	if _, err := io.Copy(u, limited(r, limit)); err != nil {
		u.Abort(err)
		return "", 0, fmt.Errorf("reading blob: %w", err)
	}
	return u.Commit(want)
}

// ErrTooLarge means a blob was larger than the limit it was read with.
var ErrTooLarge = errors.New("blob larger than the limit")

type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, ErrTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func limited(r io.Reader, limit int64) io.Reader {
	if limit <= 0 {
		return r
	}
	return &limitReader{r: r, left: limit}
}

// OpenBlob opens a blob for reading.
func (s *Store) OpenBlob(sha string) (*os.File, error) {
	if err := ValidSHA256(sha); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(sha))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: blob %s", ErrNotFound, sha)
	}
	return f, err
}

// ReclaimBlobs deletes blobs that no file refers to and that are older than
// grace (an upload writes its blob before the file record commits, and a
// follower may receive a copy before it applies the record), and temporary
// files of uploads that died, older than grace. It returns how many it
// deleted.
func (s *Store) ReclaimBlobs(grace time.Duration) (int, error) {
	refs := map[string]bool{}
	err := s.forEachFile(func(f File) error {
		refs[f.SHA256] = true
		return nil
	})
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-grace)
	n := 0
	dirs, err := os.ReadDir(s.blobDir())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		sub := filepath.Join(s.blobDir(), d.Name())
		entries, err := os.ReadDir(sub)
		if err != nil {
			continue
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || info.ModTime().After(cutoff) {
				continue
			}
			if d.Name() != "tmp" && (refs[e.Name()] || ValidSHA256(e.Name()) != nil) {
				continue
			}
			if os.Remove(filepath.Join(sub, e.Name())) == nil {
				n++
			}
		}
	}
	return n, nil
}

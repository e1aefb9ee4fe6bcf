package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// File is a stored file: its path in a namespace and the blob that holds it.
type File struct {
	Namespace   string    `json:"namespace"`
	Path        string    `json:"path"`
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type,omitempty"`
	Rev         uint64    `json:"rev"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

func fileKey(ns, p string) []byte {
	b := make([]byte, 0, len(ns)+1+len(p))
	b = append(b, ns...)
	b = append(b, 0)
	return append(b, p...)
}

func applyFile(tx *bolt.Tx, index uint64, c *Command) error {
	b := tx.Bucket(bucketFiles)
	k := fileKey(c.File.Namespace, c.File.Path)
	var cur *File
	if raw := b.Get(k); raw != nil {
		cur = new(File)
		if err := json.Unmarshal(raw, cur); err != nil {
			return fmt.Errorf("stored file %s/%s is corrupt: %w", c.File.Namespace, c.File.Path, err)
		}
	}
	if c.IfRev != nil {
		var have uint64
		if cur != nil {
			have = cur.Rev
		}
		if have != *c.IfRev {
			return fmt.Errorf("%w: %s/%s is at revision %d, not %d", ErrConflict, c.File.Namespace, c.File.Path, have, *c.IfRev)
		}
	}
	if c.Op == OpFileDelete {
		if cur == nil {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, c.File.Namespace, c.File.Path)
		}
		return b.Delete(k)
	}
	when := time.Unix(0, c.Time).UTC()
	f := &File{Namespace: c.File.Namespace, Path: c.File.Path, SHA256: c.File.SHA256, Size: c.File.Size,
		ContentType: c.File.ContentType, Rev: index, Created: when, Updated: when}
	if cur != nil {
		f.Created = cur.Created
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// GetFile returns one file's record, or ErrNotFound.
func (s *Store) GetFile(ns, p string) (*File, error) {
	if _, err := CleanFilePath(ns, p); err != nil {
		return nil, err
	}
	f := new(File)
	if err := s.getJSON(bucketFiles, fileKey(ns, p), ns+"/"+p, f); err != nil {
		return nil, err
	}
	return f, nil
}

// FilePage is one page of a file listing.
type FilePage struct {
	Items []*File `json:"items"`
	Next  string  `json:"next,omitempty"`
}

// ListFiles returns the files of a namespace in path order.
func (s *Store) ListFiles(ns string, o ListOptions) (*FilePage, error) {
	if err := ValidNamespace(ns); err != nil {
		return nil, err
	}
	if o.Limit < 0 || o.Limit > MaxListLimit {
		return nil, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalid, MaxListLimit)
	}
	if o.Limit == 0 {
		o.Limit = DefaultListLimit
	}
	page := &FilePage{Items: []*File{}}
	prefix := fileKey(ns, o.Prefix)
	start := prefix
	if o.After != "" {
		if a := append(fileKey(ns, o.After), 0); bytes.Compare(a, prefix) > 0 {
			start = a
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFiles).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(page.Items) == o.Limit {
				page.Next = page.Items[len(page.Items)-1].Path
				return nil
			}
			f := new(File)
			if err := json.Unmarshal(v, f); err != nil {
				return err
			}
			page.Items = append(page.Items, f)
		}
		return nil
	})
	return page, err
}

// MissingBlobs returns the SHA-256 of every blob a file refers to that is
// not here (at most limit of them).
func (s *Store) MissingBlobs(limit int) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	err := s.forEachFile(func(f File) error {
		if len(out) < limit && !seen[f.SHA256] && !s.HasBlob(f.SHA256) {
			seen[f.SHA256] = true
			out = append(out, f.SHA256)
		}
		return nil
	})
	return out, err
}

// forEachFile calls fn with every committed file record.
func (s *Store) forEachFile(fn func(File) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFiles).ForEach(func(_, v []byte) error {
			var f File
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			return fn(f)
		})
	})
}

// FileLag is how far this node's file contents are behind the committed
// file records.
type FileLag struct {
	Files   int   // committed files' contents (distinct blobs) not here
	Bytes   int64 // their size
	Fetched int64 // of which copies under way hold this much
}

// FileLag measures this node's file lag.
func (s *Store) FileLag() (FileLag, error) {
	var lag FileLag
	seen := map[string]bool{}
	err := s.forEachFile(func(f File) error {
		if seen[f.SHA256] || s.HasBlob(f.SHA256) {
			return nil
		}
		seen[f.SHA256] = true
		lag.Files++
		lag.Bytes += f.Size
		if st, err := os.Stat(filepath.Join(s.blobDir(), "tmp", "partial-"+f.SHA256)); err == nil {
			lag.Fetched += min(st.Size(), f.Size)
		}
		return nil
	})
	return lag, err
}

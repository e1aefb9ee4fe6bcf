package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCleanFilePath(t *testing.T) {
	good := []string{"a", "ubuntu/24.04/live.iso", "plugins/ipmi-v1.2", "ünïcode/ok"}
	for _, p := range good {
		if _, err := CleanFilePath("files", p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	bad := map[string]string{"": "empty", "/etc/passwd": "absolute", "../x": "dotdot", "a/../b": "dotdot", "a/./b": "dot",
		"a//b": "empty segment", "a/": "trailing slash", "a\\b": "backslash", "a\x00b": "NUL", "a\nb": "control",
		string([]byte{0xff}): "invalid UTF-8", strings.Repeat("x", 256): "long segment", strings.Repeat("a/", 600): "long path"}
	for p, why := range bad {
		if _, err := CleanFilePath("files", p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %q accepted", why, p)
		}
	}
	if _, err := CleanFilePath("etc", "x"); !errors.Is(err, ErrInvalid) {
		t.Error("unknown namespace accepted")
	}
}

func TestBlobs(t *testing.T) {
	s := testStore(t)
	data := bytes.Repeat([]byte("raftvip "), 100000)
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	// A wrong digest stores nothing, not even a temporary file.
	other := sha256.Sum256([]byte("other"))
	if _, _, err := s.PutBlob(bytes.NewReader(data), hex.EncodeToString(other[:]), 0); !errors.Is(err, ErrDigest) {
		t.Fatalf("wrong digest: %v", err)
	}
	if tmp, _ := os.ReadDir(filepath.Join(s.blobDir(), "tmp")); len(tmp) != 0 {
		t.Fatalf("a refused blob left %d temporary files", len(tmp))
	}
	if _, _, err := s.PutBlob(bytes.NewReader(data), "", 1000); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	got, n, err := s.PutBlob(bytes.NewReader(data), sha, int64(len(data)))
	if err != nil || got != sha || n != int64(len(data)) || !s.HasBlob(sha) {
		t.Fatalf("PutBlob: %s %d %v", got, n, err)
	}
	f, err := s.OpenBlob(sha)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, _ := f.Stat(); st.Size() != int64(len(data)) {
		t.Fatalf("stored %d bytes", st.Size())
	}
	if _, err := s.OpenBlob(strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	if _, err := s.OpenBlob("../../etc/passwd"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a path as a blob name: %v", err)
	}
}

func TestFileRecords(t *testing.T) {
	s := testStore(t)
	sha := strings.Repeat("ab", 32)
	put := Command{Op: OpFilePut, File: &FileRef{Namespace: "isos", Path: "a/b.iso", SHA256: sha, Size: 10}, Time: 1}
	res := s.ApplyBatch([]Entry{{Index: 1, Term: 1, Data: enc(t, put)}})[0]
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	f, err := s.GetFile("isos", "a/b.iso")
	if err != nil || f.SHA256 != sha || f.Rev != 1 {
		t.Fatalf("GetFile: %+v %v", f, err)
	}
	if missing, _ := s.MissingBlobs(10); len(missing) != 1 || missing[0] != sha {
		t.Fatalf("MissingBlobs: %v", missing)
	}
	cas := put
	cas.IfRev = rev(7)
	if res := s.ApplyBatch([]Entry{{Index: 2, Term: 1, Data: enc(t, cas)}})[0]; !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("CAS with a stale revision: %v", res.Err)
	}
	page, err := s.ListFiles("isos", ListOptions{Prefix: "a/"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("ListFiles: %+v %v", page, err)
	}
	del := Command{Op: OpFileDelete, File: &FileRef{Namespace: "isos", Path: "a/b.iso"}, Time: 2}
	if res := s.ApplyBatch([]Entry{{Index: 3, Term: 1, Data: enc(t, del)}})[0]; res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, err := s.GetFile("isos", "a/b.iso"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted file: %v", err)
	}
	for _, c := range []Command{
		{Op: OpFilePut, File: &FileRef{Namespace: "isos", Path: "../x", SHA256: sha}},
		{Op: OpFilePut, File: &FileRef{Namespace: "isos", Path: "x", SHA256: "nothex"}},
		{Op: OpFilePut, File: &FileRef{Namespace: "isos", Path: "x", SHA256: sha, Size: -1}},
		{Op: OpFilePut},
		{Op: OpFilePut, Kind: "k", File: &FileRef{Namespace: "isos", Path: "x", SHA256: sha}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestJobLogs(t *testing.T) {
	s := testStore(t)
	var idx uint64
	appendChunk := func(data string, ifLen *uint64) error {
		idx++
		c := Command{Op: OpJobAppend, Job: "j1", Data: []byte(data), IfRev: ifLen, Time: 1}
		return s.ApplyBatch([]Entry{{Index: idx, Term: 1, Data: enc(t, c)}})[0].Err
	}
	for _, ch := range []string{"abc", "defg", "h"} {
		if err := appendChunk(ch, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := appendChunk("x", rev(3)); !errors.Is(err, ErrConflict) {
		t.Fatalf("append at a stale length: %v", err)
	}
	if err := appendChunk("ij", rev(8)); err != nil {
		t.Fatalf("append at the right length: %v", err)
	}
	const all = "abcdefghij"
	for off := 0; off <= len(all); off++ {
		for _, max := range []int{1, 3, 100} {
			got, length, err := s.ReadJobLog("j1", uint64(off), max)
			want := all[off:]
			if len(want) > max {
				want = want[:max]
			}
			if err != nil || string(got) != want || length != uint64(len(all)) {
				t.Fatalf("read at %d max %d: %q %d %v, want %q", off, max, got, length, err, want)
			}
		}
	}
	if _, _, err := s.ReadJobLog("j1", 11, 10); !errors.Is(err, ErrInvalid) {
		t.Fatalf("read past the end: %v", err)
	}
	if got, length, err := s.ReadJobLog("other", 0, 10); err != nil || len(got) != 0 || length != 0 {
		t.Fatalf("a job without a log: %q %d %v", got, length, err)
	}
	if err := (&Command{Op: OpJobAppend, Job: "../x", Data: []byte("a")}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad job ID accepted")
	}
}

func TestReclaimBlobs(t *testing.T) {
	s := testStore(t)
	kept, _, err := s.PutBlob(strings.NewReader("referenced"), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	orphan, _, err := s.PutBlob(strings.NewReader("orphan"), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := Command{Op: OpFilePut, File: &FileRef{Namespace: "files", Path: "k", SHA256: kept, Size: 10}, Time: 1}
	if res := s.ApplyBatch([]Entry{{Index: 1, Term: 1, Data: enc(t, c)}})[0]; res.Err != nil {
		t.Fatal(res.Err)
	}
	// Within the grace period nothing goes.
	if n, err := s.ReclaimBlobs(time.Hour); err != nil || n != 0 {
		t.Fatalf("within grace: %d %v", n, err)
	}
	if n, err := s.ReclaimBlobs(-time.Second); err != nil || n != 1 {
		t.Fatalf("after grace: %d %v", n, err)
	}
	if !s.HasBlob(kept) || s.HasBlob(orphan) {
		t.Fatalf("kept %v, orphan %v", s.HasBlob(kept), s.HasBlob(orphan))
	}
}

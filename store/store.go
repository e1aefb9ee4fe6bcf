package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta    = []byte("meta")
	bucketObjects = []byte("objects")
	bucketMembers = []byte("members")
	bucketFiles   = []byte("files")
	bucketJobLogs = []byte("joblogs")          // job ID, 0, 8-byte offset -> chunk
	bucketJobLens = []byte("joblens")          // job ID -> 8-byte length
	bucketUsed    = []byte("used-join-tokens") // token nonce -> 8-byte Unix expiry
	keyApplied    = []byte("applied")          // 8 bytes index + 8 bytes term
	keyHash       = []byte("hash")             // 32 bytes
)

// hashHistory is how many recent (index, hash) pairs a Store remembers, so
// that nodes at slightly different indexes can still be compared.
const hashHistory = 4096

// Object is one stored object.
type Object struct {
	Kind string `json:"kind"`
	Key  string `json:"key"`
	// Rev is the Raft index of the object's last write.
	Rev     uint64          `json:"rev"`
	Created time.Time       `json:"created"`
	Updated time.Time       `json:"updated"`
	Value   json.RawMessage `json:"value"`
}

// Entry is one committed log entry handed to ApplyBatch. Data is nil for
// entries that carry no command (Raft configuration changes, no-ops): they
// only advance the applied index.
type Entry struct {
	Index uint64
	Term  uint64
	Data  []byte
}

// Result is the outcome of applying one entry. Err is nil, or wraps
// ErrNotFound, ErrExists, ErrConflict, ErrInvalid or ErrUnknownVersion.
type Result struct {
	Index  uint64
	Object *Object // the object after the write; nil for deletes and member ops
	// LogLength is a job log's length after an append.
	LogLength uint64
	Err       error
}

// Store is the on-disk state machine. Apply methods must be called from one
// goroutine at a time (Raft's FSM goroutine); reads may be called from any.
type Store struct {
	dir    string
	logger *slog.Logger

	mu sync.RWMutex // guards db against Restore swapping it
	db *bolt.DB

	bmu      sync.Mutex
	resuming map[string]bool // blobs a resumable copy is under way for

	jmu      sync.Mutex
	jobsWake chan struct{} // closed and replaced on every job log append

	hmu     sync.RWMutex
	applied uint64
	term    uint64
	hash    [32]byte
	ring    [hashHistory]hashAt
}

type hashAt struct {
	index uint64
	hash  [32]byte
}

const dbName = "state.db"

func boltOptions() *bolt.Options {
	return &bolt.Options{Timeout: 5 * time.Second, InitialMmapSize: 256 << 20, NoFreelistSync: true}
}

// Open opens (or creates) the store in dir.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating store dir: %w", err)
	}
	s := &Store{dir: dir, logger: logger}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) open() error {
	db, err := bolt.Open(filepath.Join(s.dir, dbName), 0o600, boltOptions())
	if err != nil {
		return fmt.Errorf("opening store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketObjects, bucketMembers, bucketFiles, bucketJobLogs, bucketJobLens} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("initialising store: %w", err)
	}
	s.db = db
	return s.loadMeta()
}

func (s *Store) loadMeta() error {
	return s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		s.hmu.Lock()
		defer s.hmu.Unlock()
		s.applied, s.term, s.hash = 0, 0, [32]byte{}
		if v := m.Get(keyApplied); len(v) == 16 {
			s.applied = binary.BigEndian.Uint64(v[:8])
			s.term = binary.BigEndian.Uint64(v[8:])
		}
		copy(s.hash[:], m.Get(keyHash))
		s.ring = [hashHistory]hashAt{}
		s.ring[s.applied%hashHistory] = hashAt{s.applied, s.hash}
		return nil
	})
}

// Close closes the database. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

// Applied returns the index and term of the last applied entry.
func (s *Store) Applied() (index, term uint64) {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	return s.applied, s.term
}

// StateHash returns the applied index and the hash of the state at it. The
// hash chains every applied command (SHA-256 of the previous hash, the index
// and the command bytes), so two nodes with the same hash at the same index
// applied the same commands and hold the same state.
func (s *Store) StateHash() (uint64, string) {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	return s.applied, hex.EncodeToString(s.hash[:])
}

// HashAt returns the state hash at a recent index, if this node applied that
// index and still remembers it.
func (s *Store) HashAt(index uint64) (string, bool) {
	s.hmu.RLock()
	defer s.hmu.RUnlock()
	h := s.ring[index%hashHistory]
	if h.index != index || index > s.applied {
		return "", false
	}
	return hex.EncodeToString(h.hash[:]), true
}

func objKey(kind, key string) []byte {
	b := make([]byte, 0, len(kind)+1+len(key))
	b = append(b, kind...)
	b = append(b, 0)
	return append(b, key...)
}

// ApplyBatch applies committed entries in order, in one disk transaction.
// Entries at or below the applied index (replayed after a restart) are
// skipped. It returns one Result per entry.
func (s *Store) ApplyBatch(entries []Entry) []Result {
	results := make([]Result, len(entries))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		for i := range results {
			results[i].Err = errClosed
		}
		return results
	}
	s.hmu.RLock()
	applied, term, hash := s.applied, s.term, s.hash
	s.hmu.RUnlock()
	type step struct {
		index uint64
		hash  [32]byte
	}
	var steps []step
	jobsChanged := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, e := range entries {
			results[i].Index = e.Index
			if e.Index <= applied {
				continue
			}
			applied, term = e.Index, e.Term
			if e.Data == nil {
				continue
			}
			hash = chain(hash, e.Index, e.Data)
			steps = append(steps, step{e.Index, hash})
			cmd, err := Decode(e.Data)
			if err != nil {
				results[i].Err = err
				continue
			}
			results[i].Object, results[i].Err = applyOne(tx, e.Index, cmd)
			if cmd.Op == OpJobAppend {
				results[i].LogLength = jobLength(tx, cmd.Job)
				jobsChanged = true
			}
		}
		var v [16]byte
		binary.BigEndian.PutUint64(v[:8], applied)
		binary.BigEndian.PutUint64(v[8:], term)
		m := tx.Bucket(bucketMeta)
		if err := m.Put(keyApplied, v[:]); err != nil {
			return err
		}
		return m.Put(keyHash, hash[:])
	})
	if err != nil {
		// A failed disk write leaves this node unable to follow the log;
		// carrying on would make it diverge. Stop here.
		panic(fmt.Sprintf("store: writing applied entries: %v", err))
	}
	s.hmu.Lock()
	s.applied, s.term, s.hash = applied, term, hash
	for _, st := range steps {
		s.ring[st.index%hashHistory] = hashAt(st)
	}
	s.hmu.Unlock()
	if jobsChanged {
		s.notifyJobs()
	}
	return results
}

func chain(prev [32]byte, index uint64, data []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	var ib [8]byte
	binary.BigEndian.PutUint64(ib[:], index)
	h.Write(ib[:])
	h.Write(data)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func applyOne(tx *bolt.Tx, index uint64, c *Command) (*Object, error) {
	switch c.Op {
	case OpMemberPut:
		v, err := json.Marshal(c.Member)
		if err != nil {
			return nil, err
		}
		return nil, tx.Bucket(bucketMembers).Put([]byte(c.Member.ID), v)
	case OpMemberDelete:
		return nil, tx.Bucket(bucketMembers).Delete([]byte(c.Member.ID))
	case OpFilePut, OpFileDelete:
		return nil, applyFile(tx, index, c)
	case OpJobAppend:
		return nil, applyJobAppend(tx, c)
	case OpJoinTokenUse:
		return nil, applyJoinTokenUse(tx, c)
	case OpTokenPut, OpTokenDelete:
		return nil, applyToken(tx, c)
	}
	b := tx.Bucket(bucketObjects)
	k := objKey(c.Kind, c.Key)
	var cur *Object
	if raw := b.Get(k); raw != nil {
		cur = new(Object)
		if err := json.Unmarshal(raw, cur); err != nil {
			return nil, fmt.Errorf("stored object %s/%s is corrupt: %w", c.Kind, c.Key, err)
		}
	}
	if c.IfRev != nil {
		var have uint64
		if cur != nil {
			have = cur.Rev
		}
		if have != *c.IfRev {
			return cur, fmt.Errorf("%w: %s/%s is at revision %d, not %d", ErrConflict, c.Kind, c.Key, have, *c.IfRev)
		}
	}
	when := time.Unix(0, c.Time).UTC()
	switch c.Op {
	case OpDelete:
		if cur == nil {
			return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, c.Kind, c.Key)
		}
		return nil, b.Delete(k)
	case OpCreate:
		if cur != nil {
			return cur, fmt.Errorf("%w: %s/%s", ErrExists, c.Kind, c.Key)
		}
	case OpPatch:
		if cur == nil {
			return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, c.Kind, c.Key)
		}
	}
	obj := &Object{Kind: c.Kind, Key: c.Key, Rev: index, Created: when, Updated: when, Value: c.Value}
	if cur != nil {
		obj.Created = cur.Created
	}
	if c.Op == OpPatch {
		merged, err := jsonpatch.MergePatch(cur.Value, c.Value)
		if err != nil {
			return cur, fmt.Errorf("%w: merge patch: %v", ErrInvalid, err)
		}
		if len(merged) > MaxValueSize {
			return cur, fmt.Errorf("%w: patched value is %d bytes, the limit is %d", ErrInvalid, len(merged), MaxValueSize)
		}
		if err := CheckJSON(merged); err != nil { // the same on every node: the inputs are
			return cur, fmt.Errorf("%w: patched value: %v", ErrInvalid, err)
		}
		obj.Value = merged
	} else {
		var compact bytes.Buffer
		if err := json.Compact(&compact, c.Value); err != nil {
			return cur, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		obj.Value = compact.Bytes()
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return obj, b.Put(k, raw)
}

// errClosed is returned by reads of a closed store.
var errClosed = errors.New("store closed")

// view runs fn in a read transaction, guarded against Close and Restore.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errClosed
	}
	return s.db.View(fn)
}

// getJSON decodes the record at key in bucket into out, or says what is
// missing with ErrNotFound.
func (s *Store) getJSON(bucket, key []byte, what string, out any) error {
	return s.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get(key)
		if raw == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, what)
		}
		return json.Unmarshal(raw, out)
	})
}

// Get returns one object, or ErrNotFound.
func (s *Store) Get(kind, key string) (*Object, error) {
	if err := ValidKind(kind); err != nil {
		return nil, err
	}
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	obj := new(Object)
	if err := s.getJSON(bucketObjects, objKey(kind, key), kind+"/"+key, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// ListOptions selects a page of a kind.
type ListOptions struct {
	Prefix string // only keys that start with Prefix
	After  string // only keys strictly after After (the previous page's Next)
	Limit  int    // at most this many; 0 means DefaultListLimit
}

// Paging limits for List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Page is one page of a listing. Next is empty on the last page.
type Page struct {
	Items []*Object `json:"items"`
	Next  string    `json:"next,omitempty"`
}

// List returns the objects of a kind in key order.
func (s *Store) List(kind string, o ListOptions) (*Page, error) {
	if err := ValidKind(kind); err != nil {
		return nil, err
	}
	if o.Limit < 0 || o.Limit > MaxListLimit {
		return nil, fmt.Errorf("%w: limit must be between 1 and %d", ErrInvalid, MaxListLimit)
	}
	if o.Limit == 0 {
		o.Limit = DefaultListLimit
	}
	page := &Page{Items: []*Object{}}
	prefix := objKey(kind, o.Prefix)
	start := prefix
	if o.After != "" {
		start = append(objKey(kind, o.After), 0)
		if bytes.Compare(start, prefix) < 0 {
			start = prefix
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketObjects).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(page.Items) == o.Limit {
				page.Next = page.Items[len(page.Items)-1].Key
				return nil
			}
			obj := new(Object)
			if err := json.Unmarshal(v, obj); err != nil {
				return err
			}
			page.Items = append(page.Items, obj)
		}
		return nil
	})
	return page, err
}

// Members returns the replicated member records, ordered by ID.
func (s *Store) Members() ([]Member, error) {
	var out []Member
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(_, v []byte) error {
			var m Member
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// Snapshot is a consistent, point-in-time view of the store that can be
// written out while Apply goes on. Release it when done.
type Snapshot struct {
	tx   *bolt.Tx
	done func()
}

// Snapshot opens a point-in-time view. It must be called from the goroutine
// that applies entries, so that the view sits exactly at an entry boundary.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	if s.db == nil {
		s.mu.RUnlock()
		return nil, errClosed
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("opening snapshot: %w", err)
	}
	var once sync.Once
	return &Snapshot{tx: tx, done: func() {
		once.Do(func() {
			_ = tx.Rollback()
			s.mu.RUnlock()
		})
	}}, nil
}

// WriteTo streams the snapshot (a bbolt database file) to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	return sn.tx.WriteTo(w)
}

// Release ends the view; safe to call more than once.
func (sn *Snapshot) Release() { sn.done() }

// Restore replaces the whole state with a snapshot read from r. The stream is
// copied to disk and checked before the live state is swapped, so a broken
// stream leaves the old state in place.
func (s *Store) Restore(r io.Reader) error {
	tmp := filepath.Join(s.dir, dbName+".restore")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = checkDB(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			return fmt.Errorf("restoring snapshot: closing store: %w", err)
		}
		s.db = nil
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, dbName)); err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("restoring snapshot: %w", err)
	}
	return s.open()
}

func checkDB(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("snapshot is not a store: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketObjects, bucketMembers} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("snapshot lacks bucket %q", b)
			}
		}
		return nil
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// applyJoinTokenUse records that the join token with nonce c.Key has been
// used (ErrExists if it was before), and forgets tokens that expired before
// the proposer's clock (c.Time), which no node accepts any more.
func applyJoinTokenUse(tx *bolt.Tx, c *Command) error {
	b, err := tx.CreateBucketIfNotExists(bucketUsed) // a snapshot from before it may lack it
	if err != nil {
		return err
	}
	if b.Get([]byte(c.Key)) != nil {
		return fmt.Errorf("%w: join token %s was used already", ErrExists, c.Key)
	}
	now := c.Time / int64(time.Second)
	var stale [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) < now {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(*c.IfRev))
	return b.Put([]byte(c.Key), exp[:])
}

package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftvip/raftvip/store"
)

// BlobGrace is how old an unreferenced blob (an upload that never
// committed, a deleted file's contents) must be before it is reclaimed;
// blobGCInterval is how often that is checked.
const (
	BlobGrace      = time.Hour
	blobGCInterval = 10 * time.Minute
)

// blobCopyTimeout bounds one blob copy to a member that finishes after the
// quorum (the upload has already been answered then).
const blobCopyTimeout = 30 * time.Minute

// ReplicateBlob copies a blob this node holds to the other voters, in
// parallel and streamed, and returns once a quorum of voters (this node
// included) holds it, verified against its SHA-256. Copies still running
// then go on in the background; a member that misses one fetches it later.
func (n *Node) ReplicateBlob(ctx context.Context, sha string, size int64) error {
	r := n.r()
	if r == nil {
		return ErrNotInCluster
	}
	if !n.Store().HasBlob(sha) {
		return fmt.Errorf("%w: blob %s is not on this node", store.ErrNotFound, sha)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return translate(err)
	}
	var others []raft.Server
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) != n.cfg.NodeID {
			others = append(others, s)
		}
	}
	quorum := voters/2 + 1
	have := 1
	if have >= quorum {
		return nil
	}
	// The copies outlive the caller's request (a slow member still gets
	// its copy) but not the node.
	results := make(chan error, len(others))
	for _, s := range others {
		if !n.spawn(func() {
			cctx, cancel := context.WithTimeout(n.life, blobCopyTimeout)
			defer cancel()
			results <- n.pushBlob(cctx, string(s.Address), sha, size)
		}) {
			return ErrShutdown
		}
	}
	var errs []error
	for range others {
		select {
		case err := <-results:
			if err == nil {
				have++
				if have >= quorum {
					return nil
				}
			} else {
				errs = append(errs, err)
				if pending := len(others) - len(errs) - (have - 1); have+pending < quorum {
					return fmt.Errorf("%w: only %d of %d voters hold blob %s: %v", ErrTimeout, have, quorum, sha, errors.Join(errs...))
				}
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: copying blob %s to a quorum: %v", ErrTimeout, sha, ctx.Err())
		}
	}
	return fmt.Errorf("%w: only %d of %d voters hold blob %s: %v", ErrTimeout, have, quorum, sha, errors.Join(errs...))
}

func (n *Node) blobClient() (*http.Client, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bclient == nil {
		return nil, ErrNotInCluster
	}
	return n.bclient, nil
}

// pushBlob streams a blob to one member.
func (n *Node) pushBlob(ctx context.Context, addr, sha string, size int64) error {
	c, err := n.blobClient()
	if err != nil {
		return err
	}
	f, err := n.Store().OpenBlob(sha)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/internal/blobs/"+sha, f)
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("copying blob to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("copying blob to %s: %s", addr, resp.Status)
	}
	return nil
}

// FetchBlob copies a blob this node lacks from the leader, or else from any
// member, verified against its SHA-256.
func (n *Node) FetchBlob(ctx context.Context, sha string) error {
	if n.Store().HasBlob(sha) {
		return nil
	}
	r := n.r()
	if r == nil {
		return ErrNotInCluster
	}
	c, err := n.blobClient()
	if err != nil {
		return err
	}
	var addrs []string
	if a, _ := r.LeaderWithID(); a != "" && string(a) != n.cfg.ConsensusAddr {
		addrs = append(addrs, string(a))
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) != n.cfg.NodeID && (len(addrs) == 0 || string(s.Address) != addrs[0]) {
				addrs = append(addrs, string(s.Address))
			}
		}
	}
	var errs []error
	for _, addr := range addrs {
		err := n.fetchBlobFrom(ctx, c, addr, sha)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if errors.Is(err, store.ErrBusy) || ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("fetching blob %s: %w", sha, errors.Join(errs...))
}

// fetchBlobFrom copies blob sha from one member. An interrupted copy is
// kept and the next try asks only for the rest (an HTTP range); the whole
// is verified against the SHA-256 at the end.
func (n *Node) fetchBlobFrom(ctx context.Context, c *http.Client, addr, sha string) error {
	u, err := n.Store().ResumeBlob(sha)
	if err != nil {
		return err
	}
	off := u.Offset()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/internal/blobs/"+sha, nil)
	if err != nil {
		u.Abort(err)
		return err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := c.Do(req)
	if err != nil {
		u.Abort(err)
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		n.logger.Info("resuming the copy of a blob", "sha256", sha, "from", addr, "offset", off)
	case resp.StatusCode == http.StatusOK && off == 0:
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// What was kept is not a prefix of this blob: start again.
		err := fmt.Errorf("%s: %s", addr, resp.Status)
		u.Discard(err)
		return err
	default:
		err := fmt.Errorf("%s", resp.Status)
		u.Abort(err)
		return err
	}
	if _, err := io.Copy(u, resp.Body); err != nil {
		u.Abort(err)
		return err
	}
	_, _, err = u.Commit(sha)
	return err
}

// fetchMissingBlobs fetches every blob that committed files refer to and
// this node lacks, while it leads in term.
func (n *Node) fetchMissingBlobs(term uint64) error {
	for round := 0; round < 1000; round++ {
		missing, err := n.Store().MissingBlobs(16)
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			return nil
		}
		r := n.r()
		if r == nil || r.State() != raft.Leader || r.CurrentTerm() != term {
			return ErrNotLeader
		}
		n.logger.Info("new leader fetches committed files it lacks before becoming active", "count", len(missing))
		for _, sha := range missing {
			ctx, cancel := context.WithTimeout(context.Background(), blobCopyTimeout)
			err := n.FetchBlob(ctx, sha)
			cancel()
			if err != nil {
				return err
			}
			select {
			case <-n.stop:
				return ErrShutdown
			default:
			}
		}
	}
	return errors.New("too many missing blobs")
}

// syncBlobs fetches, in the background, the blobs that committed files
// refer to and this node lacks (it missed a copy, or enrolled later, or
// restored a snapshot, which carries only the manifest).
func (n *Node) syncBlobs() {
	defer n.wg.Done()
	base := n.life
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastGC := time.Now()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if time.Since(lastGC) > blobGCInterval {
			lastGC = time.Now()
			if k, err := n.Store().ReclaimBlobs(BlobGrace); err != nil {
				n.logger.Warn("reclaiming unreferenced blobs", "err", err)
			} else if k > 0 {
				n.logger.Info("reclaimed unreferenced blobs", "count", k)
			}
		}
		missing, err := n.Store().MissingBlobs(16)
		if err != nil {
			continue
		}
		for _, sha := range missing {
			ctx, cancel := context.WithTimeout(base, blobCopyTimeout)
			if err := n.FetchBlob(ctx, sha); errors.Is(err, store.ErrBusy) {
				// Another copy of it is under way (a new leader's fetch).
			} else if err != nil {
				n.logger.Warn("fetching a missing blob", "sha256", sha, "err", err)
			} else {
				n.logger.Info("fetched a missing blob", "sha256", sha)
			}
			cancel()
		}
	}
}

// serveBlobs are the member endpoints for blobs.
func (n *Node) serveBlobs(mux *http.ServeMux) {
	mux.HandleFunc("POST /internal/blobs/{sha}", func(w http.ResponseWriter, req *http.Request) {
		sha := req.PathValue("sha")
		limit := int64(0)
		if req.ContentLength > 0 {
			limit = req.ContentLength
		}
		if _, _, err := n.Store().ReceiveBlob(req.Body, sha, limit); err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, store.ErrDigest) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrTooLarge):
				code = http.StatusBadRequest
			case errors.Is(err, store.ErrBusy):
				code = http.StatusConflict // this node is fetching it
			}
			writeJSON(w, code, errorBody{Error: err.Error(), Code: "blob"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"sha256": sha})
	})
	mux.HandleFunc("POST /internal/blobs", func(w http.ResponseWriter, req *http.Request) {
		sha, _, err := n.Store().PutBlob(req.Body, "", 0)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error(), Code: "blob"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"sha256": sha})
	})
	mux.HandleFunc("GET /internal/blobs/{sha}", func(w http.ResponseWriter, req *http.Request) {
		f, err := n.Store().OpenBlob(req.PathValue("sha"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, errorBody{Error: err.Error(), Code: "not_found"})
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error(), Code: "blob"})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, req, "", st.ModTime(), f)
	})
}

// BlobFanout streams an upload to the other voters while this node stores
// it, so that a file is copied to a quorum in one pass instead of two. Each
// peer reads the upload's file as it grows, at its own pace.
//
// Only as many peers as a quorum needs are streamed to while the upload
// runs (those whose last copy succeeded, faster first); the others start when the
// upload is committed, or at once if a running stream fails or falls
// fileLagStart behind. Like a Raft entry, the upload is answered once a
// quorum holds it; the remaining copies go on in the background. This keeps
// the active node's outgoing traffic during an upload to what a quorum
// needs (one stream in a three-node cluster, not two), and on nodes that
// share disks or links the quorum's copies are not slowed by the others.
type BlobFanout struct {
	quorum  int
	results chan peerResult
	peers   int
	cancel  context.CancelFunc
	spawn   func(func()) bool // the node's: Close waits for the streams

	mu      sync.Mutex
	waiting []chan struct{} // start signals of the peers not yet streamed to, best first
	sha     string          // the blob's SHA-256, once the upload is committed
}

type peerResult struct {
	sha string
	err error
}

// A running peer stream that is stuck (no progress for fileStuckAfter) or
// far behind (more than fileLagStart and more than half of the upload so
// far: a peer that shares a machine's cores keeps up at two thirds or so)
// has a deferred peer start at once.
const (
	fileLagStart   = 256 << 20
	fileStuckAfter = 5 * time.Second
)

// FanoutBlob prepares a stream of u to every other voter. size is the
// blob's size if known (or -1). The streams outlive the caller's request
// (they end with the copy, blobCopyTimeout, Finish(_, false) or the node's
// stop).
func (n *Node) FanoutBlob(u *store.Upload, size int64) (*BlobFanout, error) {
	r := n.r()
	if r == nil {
		return nil, ErrNotInCluster
	}
	c, err := n.blobClient()
	if err != nil {
		return nil, err
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, translate(err)
	}
	var addrs []string
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) != n.cfg.NodeID {
			addrs = append(addrs, string(s.Address))
		}
	}
	// Peers whose last copy succeeded first, faster first; the others (never
	// measured, or failed last time) after them in random order.
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	n.rateMu.Lock()
	rates := maps.Clone(n.blobRates)
	n.rateMu.Unlock()
	sort.SliceStable(addrs, func(i, j int) bool { return rates[addrs[i]] > rates[addrs[j]] })

	// No deadline while the upload runs (it may be slow); Finish gives the
	// copies that go on after it blobCopyTimeout.
	ctx, cancel := context.WithCancel(n.life)
	fan := &BlobFanout{quorum: voters/2 + 1, results: make(chan peerResult, len(addrs)), peers: len(addrs), cancel: cancel, spawn: n.spawn}
	readers := make([]*store.UploadReader, len(addrs))
	for i := range addrs {
		if readers[i], err = u.NewReader(); err != nil {
			cancel()
			for _, rd := range readers[:i] {
				rd.Close()
			}
			return nil, err
		}
	}
	// The waiting list is complete before any stream starts: a stream that
	// fails calls startNext, which reads it.
	var running []*store.UploadReader
	starts := make([]chan struct{}, len(addrs))
	for i := range addrs {
		starts[i] = make(chan struct{})
		if i < fan.quorum-1 {
			close(starts[i])
			running = append(running, readers[i])
		} else {
			fan.waiting = append(fan.waiting, starts[i])
		}
	}
	for i, addr := range addrs {
		body, start := readers[i], starts[i]
		if !n.spawn(func() {
			select {
			case <-start:
			case <-ctx.Done():
				body.Close()
				fan.results <- peerResult{err: ctx.Err()}
				return
			}
			fan.mu.Lock()
			known := fan.sha
			fan.mu.Unlock()
			t0 := time.Now()
			sha, err := n.streamBlob(ctx, c, addr, known, body, size)
			n.rateMu.Lock()
			if err != nil {
				// Last in line next time.
				delete(n.blobRates, addr)
			} else if d := time.Since(t0); body.Offset() > 0 && d > 0 {
				if n.blobRates == nil {
					n.blobRates = map[string]float64{}
				}
				n.blobRates[addr] = float64(body.Offset()) / d.Seconds()
			}
			n.rateMu.Unlock()
			if err != nil {
				err = fmt.Errorf("copying an upload to %s: %w", addr, err)
				fan.startNext(1)
			}
			fan.results <- peerResult{sha: sha, err: err}
		}) {
			body.Close()
			fan.results <- peerResult{err: ErrShutdown}
		}
	}
	if len(addrs) == 0 {
		cancel()
	} else if len(starts) > len(running) {
		n.spawn(func() { fan.watchLag(ctx, u, running) })
	}
	return fan, nil
}

// startNext starts up to k of the peers not yet streamed to.
func (f *BlobFanout) startNext(k int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ; k > 0 && len(f.waiting) > 0; k-- {
		close(f.waiting[0])
		f.waiting = f.waiting[1:]
	}
}

// watchLag starts a deferred peer for each running stream that gets stuck
// or falls far behind the upload.
func (f *BlobFanout) watchLag(ctx context.Context, u *store.Upload, running []*store.UploadReader) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	type seen struct {
		off    int64
		at     time.Time
		lagged bool
	}
	st := make([]seen, len(running))
	for i := range st {
		st[i].at = time.Now()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, total := time.Now(), u.Offset()
		for i, rd := range running {
			off := rd.Offset()
			if off != st[i].off {
				st[i].off, st[i].at = off, now
			}
			behind := total - off
			stuck := off < total && now.Sub(st[i].at) > fileStuckAfter
			if !st[i].lagged && (stuck || (behind > fileLagStart && behind > total/2)) {
				st[i].lagged = true
				f.startNext(1)
			}
		}
		f.mu.Lock()
		left := len(f.waiting)
		f.mu.Unlock()
		if left == 0 {
			return
		}
	}
}

// streamBlob posts body to a member as a new blob and returns the SHA-256
// the member computed. A copy that starts after the upload committed names
// its blob (sha), which keeps the member from also fetching it meanwhile.
func (n *Node) streamBlob(ctx context.Context, c *http.Client, addr, sha string, body io.ReadCloser, size int64) (string, error) {
	url := "https://" + addr + "/internal/blobs"
	if sha != "" {
		url += "/" + sha
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		body.Close()
		return "", err
	}
	req.ContentLength = size
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := readAllLimit(resp.Body, 64<<10)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, out)
	}
	var res struct {
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return "", err
	}
	return res.SHA256, nil
}

// Finish is called once the upload has been committed (ok) or aborted.
// After a commit it starts the peers not yet streamed to and waits until a
// quorum of voters, this node included, holds the blob sha, or until that
// can no longer happen, and reports which; streams still running go on in
// the background. After an abort it stops every stream.
func (f *BlobFanout) Finish(sha string, ok bool) bool {
	if !ok {
		f.cancel()
		return false
	}
	f.mu.Lock()
	f.sha = sha
	f.mu.Unlock()
	f.startNext(f.peers)
	have, pending := 1, f.peers
	for have < f.quorum && have+pending >= f.quorum {
		res := <-f.results
		pending--
		if res.err == nil && res.sha == sha {
			have++
		}
	}
	if pending == 0 {
		f.cancel()
	} else {
		// The rest go on in the background, for at most blobCopyTimeout.
		stop := time.AfterFunc(blobCopyTimeout, f.cancel)
		if !f.spawn(func() {
			for range pending {
				<-f.results
			}
			stop.Stop()
			f.cancel()
		}) {
			stop.Stop()
			f.cancel()
		}
	}
	return have >= f.quorum
}

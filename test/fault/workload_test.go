package fault

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	route "github.com/raftvip/raftvip/client"
)

const (
	kind    = "fault"
	nKeys   = 12
	jobID   = "j1"
	timeout = 3 * time.Second // per request; a freeze of the nemesis lasts up to 4 s
	// readTimeout is a reader's: short, so that a reader of a frozen node
	// asks again during the freeze, and its last question is answered the
	// moment the node thaws: by a node that may still believe it leads,
	// after another leader has acknowledged writes. A read that times out
	// tells nothing and costs the checker nothing.
	readTimeout = time.Second
)

// Outcomes of an operation.
const (
	ok      = "ok"      // 2xx
	refused = "refused" // an error answer other than 504 outcome_unknown: nothing happened
	unknown = "unknown" // 504 outcome_unknown, a timeout or a broken connection
)

// op is one recorded operation: what was asked, when, and what came back.
type op struct {
	Client  int    `json:"client"`
	Target  string `json:"target"` // vip or a node's address
	Type    string `json:"type"`   // create put cas patch delete get stale list append upload cut bad download
	Key     string `json:"key,omitempty"`
	ID      string `json:"id,omitempty"` // the unique value a write writes
	IfRev   uint64 `json:"if_rev,omitempty"`
	Call    int64  `json:"call"`   // ns since the run began
	Return  int64  `json:"return"` // ns since the run began
	Outcome string `json:"outcome"`
	Status  int    `json:"status,omitempty"`
	Node    string `json:"node,omitempty"` // X-Raftvip-Node of the answer
	Err     string `json:"err,omitempty"`
	// Results.
	Exists bool     `json:"exists,omitempty"`
	W      string   `json:"w,omitempty"`
	A      string   `json:"a,omitempty"`
	B      string   `json:"b,omitempty"`
	Rev    uint64   `json:"rev,omitempty"`
	Items  []objVal `json:"items,omitempty"`  // list
	Offset uint64   `json:"offset,omitempty"` // append: the expected length
	Size   int      `json:"size,omitempty"`   // upload
}

// objVal is an object as a read sees it: the value is {"w","a","b"}.
type objVal struct {
	Key string `json:"key"`
	W   string `json:"w"`
	A   string `json:"a,omitempty"`
	B   string `json:"b,omitempty"`
	Rev uint64 `json:"rev"`
}

// history collects operations from every client.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []op
	files map[string][]byte // what each upload sent
	bad   []string          // violations seen while running (partial downloads)
}

func newHistory() *history { return &history{start: time.Now(), files: map[string][]byte{}} }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(o op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

func (h *history) violation(format string, args ...any) {
	h.mu.Lock()
	h.bad = append(h.bad, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// client is one worker of the workload.
type client struct {
	c      *cluster
	h      *history
	id     int
	target string // host:port
	direct bool   // talks to one node, not the VIP
	reader bool   // only linearizable gets, each given readTimeout
	rng    *rand.Rand
	seq    int
	revs   map[string]uint64 // last revision this client saw per key
	logLen uint64
	failed bool // the last step got no answer, or an error other than a precondition's
}

func (w *client) newID() string {
	w.seq++
	return fmt.Sprintf("c%d-%d", w.id, w.seq)
}

// do sends one request and classifies the answer.
func (w *client) do(method, path string, body io.Reader, hdr map[string]string, o *op) ([]byte, http.Header) {
	d := timeout
	if w.reader {
		d = readTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "https://"+w.target+path, body)
	req.Header.Set("Authorization", "Bearer "+w.c.token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	o.Client, o.Target, o.Call = w.id, w.target, w.h.now()
	resp, err := w.c.http.Do(req)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	o.Return = w.h.now()
	if err != nil {
		o.Outcome, o.Err, w.failed = unknown, err.Error(), true
		return nil, nil
	}
	o.Status, o.Node = resp.StatusCode, resp.Header.Get("X-Raftvip-Node")
	w.failed = resp.StatusCode >= 500
	var e struct {
		Code string `json:"code"`
	}
	switch {
	case resp.StatusCode < 300:
		o.Outcome = ok
	case resp.StatusCode == http.StatusGatewayTimeout || json.Unmarshal(b, &e) == nil && e.Code == "outcome_unknown":
		o.Outcome, o.Err = unknown, strings.TrimSpace(string(b))
	default:
		o.Outcome, o.Err = refused, strings.TrimSpace(string(b))
	}
	return b, resp.Header
}

func parseObj(b []byte) (objVal, bool) {
	var o struct {
		Key   string `json:"key"`
		Rev   uint64 `json:"rev"`
		Value objVal `json:"value"`
	}
	if json.Unmarshal(b, &o) != nil || o.Value.W == "" {
		return objVal{}, false
	}
	v := o.Value
	v.Key, v.Rev = o.Key, o.Rev
	return v, true
}

// run issues operations until ctx ends.
func (w *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.failed = false
		w.step()
		pause := time.Duration(w.rng.IntN(20)) * time.Millisecond
		if w.failed && !w.reader {
			// Back off while the cluster cannot answer: every operation of
			// unknown outcome stays open to the checker for good, and each
			// one multiplies its search.
			pause = time.Duration(200+w.rng.IntN(300)) * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (w *client) step() {
	key := fmt.Sprintf("k%d", w.rng.IntN(nKeys))
	path := route.Object(kind, key)
	if w.reader {
		w.get(key, path, false)
		return
	}
	switch p := w.rng.IntN(100); {
	case p < 14:
		w.write("put", key, path, "PUT", nil)
	case p < 20:
		w.write("create", key, path, "POST", nil)
	case p < 30:
		if rev := w.revs[key]; rev != 0 {
			w.write("cas", key, path, "PUT", &rev)
		} else {
			w.write("put", key, path, "PUT", nil)
		}
	case p < 38:
		w.write("patch", key, path, "PATCH", nil)
	case p < 42:
		w.write("delete", key, path, "DELETE", nil)
	case p < 62:
		w.get(key, path, false)
	case p < 68:
		if w.direct {
			w.get(key, path, true)
		} else {
			w.get(key, path, false)
		}
	case p < 73:
		w.list()
	case p < 86:
		w.appendLog()
	case p < 91:
		w.upload("upload")
	case p < 93:
		w.upload("cut")
	case p < 95:
		w.upload("bad")
	default:
		w.download()
	}
}

func (w *client) write(typ, key, path, method string, ifRev *uint64) {
	o := op{Type: typ, Key: key}
	var body io.Reader
	hdr := map[string]string{}
	if typ != "delete" {
		o.ID = w.newID()
		v := map[string]string{"w": o.ID, "a": o.ID}
		if typ == "patch" {
			v = map[string]string{"w": o.ID, "b": o.ID}
		}
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
		hdr["Content-Type"] = "application/json"
	}
	if ifRev != nil {
		o.IfRev = *ifRev
		hdr["If-Match"] = fmt.Sprintf(`"%d"`, *ifRev)
	}
	b, _ := w.do(method, path, body, hdr, &o)
	if o.Outcome == ok {
		var res struct {
			Rev    uint64          `json:"rev"`
			Object json.RawMessage `json:"object"`
		}
		if json.Unmarshal(b, &res) == nil {
			o.Rev = res.Rev
			if v, okv := parseObj(res.Object); okv {
				o.W, o.A, o.B, o.Exists = v.W, v.A, v.B, true
				w.revs[key] = v.Rev
			}
		}
	}
	w.h.add(o)
}

func (w *client) get(key, path string, stale bool) {
	o := op{Type: "get", Key: key}
	if stale {
		o.Type, path = "stale", path+"?stale"
	}
	b, _ := w.do("GET", path, nil, nil, &o)
	switch {
	case o.Outcome == ok:
		v, okv := parseObj(b)
		if !okv {
			w.h.violation("%s %s: unreadable object %q", o.Type, key, b)
			return
		}
		o.Exists, o.W, o.A, o.B, o.Rev = true, v.W, v.A, v.B, v.Rev
		if !stale {
			w.revs[key] = v.Rev
		}
	case o.Status == http.StatusNotFound:
		o.Outcome = ok // a read of an absent key
	default:
		return // a failed read tells nothing
	}
	w.h.add(o)
}

func (w *client) list() {
	o := op{Type: "list"}
	b, _ := w.do("GET", route.Kind(kind)+"?limit=100", nil, nil, &o)
	if o.Outcome != ok {
		return
	}
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		w.h.violation("list: unreadable page %q", b)
		return
	}
	for _, it := range page.Items {
		if v, okv := parseObj(it); okv {
			o.Items = append(o.Items, v)
		}
	}
	w.h.add(o)
}

// appendLog appends one line at the length this client last saw.
func (w *client) appendLog() {
	o := op{Type: "append", ID: w.newID(), Offset: w.logLen}
	_, hdr := w.do("POST", route.JobLog(jobID), strings.NewReader(w.idLine(o.ID)),
		map[string]string{"X-Raftvip-Log-Offset": strconv.FormatUint(w.logLen, 10)}, &o)
	if hdr != nil {
		if n, err := strconv.ParseUint(hdr.Get("X-Raftvip-Log-Length"), 10, 64); err == nil {
			w.logLen = n
		}
	}
	w.h.add(o)
}

func (w *client) idLine(id string) string { return id + "\n" }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// upload sends a whole file, one cut off mid-body (the connection dropped
// after two chunks and part of a third), or one with a wrong digest.
func (w *client) upload(typ string) {
	o := op{Type: typ, ID: w.newID()}
	name := typ + "-" + o.ID
	o.Key = name
	data := make([]byte, 4096+w.rng.IntN(60<<10))
	for i := range data {
		data[i] = byte(w.rng.Uint32())
	}
	o.Size = len(data)
	w.h.mu.Lock()
	w.h.files[name] = data
	w.h.mu.Unlock()
	path := route.File("files", name)
	switch typ {
	case "upload":
		w.do("PUT", path, bytes.NewReader(data), map[string]string{"X-Checksum-Sha256": sha(data)}, &o)
	case "bad":
		w.do("PUT", path, bytes.NewReader(data), map[string]string{"X-Checksum-Sha256": sha(append(data, 0))}, &o)
	case "cut":
		o.Client, o.Target, o.Call = w.id, w.target, w.h.now()
		w.cutUpload(path, data)
		o.Return, o.Outcome = w.h.now(), unknown // whatever happened, the file must never appear
	}
	w.h.add(o)
}

func (w *client) cutUpload(path string, data []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := w.c.http.Transport.(*http.Transport).DialContext(ctx, "tcp", w.target)
	if err != nil {
		return
	}
	host, _, _ := net.SplitHostPort(w.target)
	conn := tls.Client(raw, w.c.trust.ForHost(host))
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	bw := bufio.NewWriter(conn)
	fmt.Fprintf(bw, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, w.target, w.c.token)
	third := len(data) / 3
	for _, part := range [][]byte{data[:third], data[third : 2*third]} {
		fmt.Fprintf(bw, "%x\r\n%s\r\n", len(part), part)
	}
	fmt.Fprintf(bw, "%x\r\n%s", len(data)-2*third, data[2*third:2*third+third/2])
	_ = bw.Flush()
}

// download reads back a file some client uploaded; an answer must be the
// whole of what was sent.
func (w *client) download() {
	w.h.mu.Lock()
	var names []string
	for _, o := range w.h.ops {
		if o.Type == "upload" && o.Outcome == ok {
			names = append(names, o.Key)
		}
	}
	w.h.mu.Unlock()
	if len(names) == 0 {
		return
	}
	name := names[w.rng.IntN(len(names))]
	o := op{Type: "download", Key: name}
	b, _ := w.do("GET", route.File("files", name), nil, nil, &o)
	if o.Outcome == ok {
		w.h.mu.Lock()
		want := w.h.files[name]
		w.h.mu.Unlock()
		if !bytes.Equal(b, want) {
			w.h.violation("download %s from %s: %d bytes, not the %d uploaded", name, o.Node, len(b), len(want))
		}
	}
	w.h.add(o)
}

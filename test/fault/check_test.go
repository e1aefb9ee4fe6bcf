package fault

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	route "github.com/raftvip/raftvip/client"
)

// kv is the state of one object key in the model.
type kv struct {
	Exists  bool
	W, A, B string
}

func isWrite(t string) bool {
	switch t {
	case "put", "create", "cas", "patch", "delete":
		return true
	}
	return false
}

// revisions maps each revision to the write (its unique value) that made it,
// from every answer that showed both; a value seen with two revisions is a
// violation.
func revisions(ops []op) (map[uint64]string, []string) {
	revW, wRev := map[uint64]string{}, map[string]uint64{}
	var bad []string
	see := func(w string, rev uint64) {
		if w == "" || rev == 0 {
			return
		}
		if r, seen := wRev[w]; seen && r != rev {
			bad = append(bad, fmt.Sprintf("value %s seen at revisions %d and %d", w, r, rev))
		}
		if o, seen := revW[rev]; seen && o != w {
			bad = append(bad, fmt.Sprintf("revision %d seen holding %s and %s", rev, o, w))
		}
		wRev[w], revW[rev] = rev, w
	}
	for _, o := range ops {
		if o.Outcome == ok && (o.Type == "get" || isWrite(o.Type)) && o.Exists {
			see(o.W, o.Rev)
		}
		for _, it := range o.Items {
			see(it.W, it.Rev)
		}
	}
	return revW, bad
}

// kvModel is a key/value store with create, put, compare-and-set on the
// revision, merge patch and delete. Writes refused before they were proposed
// change nothing; writes whose outcome is unknown take effect at any instant
// after their call, or never.
func kvModel(revW map[uint64]string) porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var keys []string
			for _, o := range h {
				k := o.Input.(op).Key
				if by[k] == nil {
					keys = append(keys, k)
				}
				by[k] = append(by[k], o)
			}
			sort.Strings(keys)
			var out [][]porcupine.Operation
			for _, k := range keys {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() any { return kv{} },
		Step: func(state, input, _ any) (bool, any) {
			s, in := state.(kv), input.(op)
			if in.Type == "get" {
				if !in.Exists {
					return !s.Exists, s
				}
				return s == kv{true, in.W, in.A, in.B}, s
			}
			var cond bool
			next := kv{Exists: true, W: in.ID, A: in.ID}
			switch in.Type {
			case "put":
				cond = true
			case "create":
				cond = !s.Exists
			case "cas":
				cond = s.Exists && revW[in.IfRev] == s.W
			case "patch":
				cond, next = s.Exists, kv{true, in.ID, s.A, in.ID}
			case "delete":
				cond, next = s.Exists, kv{}
			}
			switch in.Outcome {
			case ok:
				if !cond || in.Exists && next != (kv{true, in.W, in.A, in.B}) {
					return false, s
				}
				return true, next
			case unknown:
				if cond {
					return true, next
				}
				return true, s
			}
			// Refused: nothing happened, and a refusal that names the state
			// must match it.
			switch in.Status {
			case http.StatusConflict:
				return s.Exists, s
			case http.StatusPreconditionFailed:
				return !cond, s
			case http.StatusNotFound:
				return !s.Exists, s
			}
			return true, s
		},
		DescribeOperation: func(input, _ any) string {
			in := input.(op)
			switch {
			case in.Type == "get" && in.Exists:
				return fmt.Sprintf("get %s -> w=%s a=%s b=%s rev=%d", in.Key, in.W, in.A, in.B, in.Rev)
			case in.Type == "get":
				return fmt.Sprintf("get %s -> absent", in.Key)
			}
			return fmt.Sprintf("%s %s %s if=%d -> %s %d", in.Type, in.Key, in.ID, in.IfRev, in.Outcome, in.Status)
		},
		DescribeState: func(state any) string {
			s := state.(kv)
			if !s.Exists {
				return "absent"
			}
			return fmt.Sprintf("w=%s a=%s b=%s", s.W, s.A, s.B)
		},
	}
}

// objectHistory is the porcupine history of the object operations: lists
// become a read of every key at once, failed reads are left out, and
// operations of unknown outcome never return.
func objectHistory(ops []op) []porcupine.Operation {
	var h []porcupine.Operation
	add := func(o op) {
		ret := o.Return
		if o.Outcome == unknown {
			ret = math.MaxInt64
		}
		h = append(h, porcupine.Operation{ClientId: o.Client, Input: o, Call: o.Call, Output: o, Return: ret})
	}
	for _, o := range ops {
		switch {
		case isWrite(o.Type), o.Type == "get" && o.Outcome == ok:
			add(o)
		case o.Type == "list" && o.Outcome == ok:
			seen := map[string]objVal{}
			for _, it := range o.Items {
				seen[it.Key] = it
			}
			for k := 0; k < nKeys; k++ {
				key := fmt.Sprintf("k%d", k)
				r := op{Client: o.Client, Type: "get", Key: key, Call: o.Call, Return: o.Return, Outcome: ok}
				if it, has := seen[key]; has {
					r.Exists, r.W, r.A, r.B, r.Rev = true, it.W, it.A, it.B, it.Rev
				}
				add(r)
			}
		}
	}
	return h
}

// checkObjects runs porcupine per key; on failure it writes a visualisation.
func checkObjects(ops []op, out string) []string {
	revW, bad := revisions(ops)
	model := kvModel(revW)
	res, info := porcupine.CheckOperationsVerbose(model, objectHistory(ops), 2*time.Minute)
	switch res {
	case porcupine.Illegal:
		path := filepath.Join(out, "linearizability.html")
		_ = porcupine.VisualizePath(model, info, path)
		bad = append(bad, "the object history is not linearizable (see "+path+")")
	case porcupine.Unknown:
		bad = append(bad, "the linearizability check timed out")
	}
	return bad
}

// checkStale: a stale read returns only a value that a write not refused
// wrote, called before the read returned.
func checkStale(ops []op) []string {
	call := map[string]int64{}
	for _, o := range ops {
		if isWrite(o.Type) && o.Outcome != refused && o.ID != "" {
			call[o.ID] = o.Call
		}
	}
	var bad []string
	for _, o := range ops {
		if o.Type == "stale" && o.Exists {
			if c, has := call[o.W]; !has || c > o.Return {
				bad = append(bad, fmt.Sprintf("stale read of %s from %s returned %s, which no write made", o.Key, o.Node, o.W))
			}
		}
	}
	return bad
}

// get reads a path through the VIP after the heal.
func (c *cluster) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+vip+":"+apiPort+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// checkLog: every acknowledged append is at its offset, no refused one is
// there, and every line is from one append, once.
func checkLog(c *cluster, ops []op) []string {
	st, log, err := c.get(route.JobLog(jobID))
	if err != nil || st != 200 && st != 404 {
		return []string{fmt.Sprintf("reading the job log after the heal: %d %v", st, err)}
	}
	if st == 404 {
		log = nil
	}
	var bad []string
	byID := map[string]op{}
	for _, o := range ops {
		if o.Type != "append" {
			continue
		}
		byID[o.ID] = o
		line := []byte(o.ID + "\n")
		switch o.Outcome {
		case ok:
			if end := o.Offset + uint64(len(line)); end > uint64(len(log)) || !bytes.Equal(log[o.Offset:end], line) {
				bad = append(bad, fmt.Sprintf("acknowledged append %s at offset %d is missing from the log", o.ID, o.Offset))
			}
		case refused:
			if bytes.Contains(log, append([]byte("\n"), line...)) || bytes.HasPrefix(log, line) {
				bad = append(bad, fmt.Sprintf("refused append %s (%d %s) is in the log", o.ID, o.Status, o.Err))
			}
		}
	}
	seen := map[string]bool{}
	for _, l := range strings.SplitAfter(string(log), "\n") {
		if l == "" {
			continue
		}
		id := strings.TrimSuffix(l, "\n")
		if _, has := byID[id]; !has || seen[id] || !strings.HasSuffix(l, "\n") {
			bad = append(bad, fmt.Sprintf("log line %q is from no append, or there twice", l))
		}
		seen[id] = true
	}
	return bad
}

// checkFiles: acknowledged uploads are there whole; cut-off, wrong-digest
// and refused ones are absent; unknown ones are absent or whole.
func checkFiles(c *cluster, h *history, ops []op) []string {
	var bad []string
	for _, o := range ops {
		if o.Type != "upload" && o.Type != "cut" && o.Type != "bad" {
			continue
		}
		st, b, err := c.get(route.File("files", o.Key))
		if err != nil || st != 200 && st != 404 {
			bad = append(bad, fmt.Sprintf("reading file %s after the heal: %d %v", o.Key, st, err))
			continue
		}
		want := h.files[o.Key]
		whole := st == 200 && bytes.Equal(b, want)
		switch {
		case st == 200 && !whole:
			bad = append(bad, fmt.Sprintf("file %s (%s, %s) is %d bytes that are not the %d sent", o.Key, o.Type, o.Outcome, len(b), len(want)))
		case o.Type != "upload" && st == 200:
			bad = append(bad, fmt.Sprintf("file %s was uploaded %s but is visible", o.Key, map[string]string{"cut": "cut off mid-body", "bad": "with a wrong digest"}[o.Type]))
		case o.Outcome == ok && st != 200:
			bad = append(bad, fmt.Sprintf("acknowledged file %s is missing", o.Key))
		case o.Outcome == refused && st == 200:
			bad = append(bad, fmt.Sprintf("refused upload %s (%d %s) is visible", o.Key, o.Status, o.Err))
		}
	}
	return bad
}

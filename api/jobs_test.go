package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestJobLogAcrossFailover: a writer appends lines (each append conditional
// on the log's length, retried after errors) and a reader follows the log,
// both through whichever node is alive, while the active node is killed.
// The reader ends with exactly the lines written, none lost or doubled.
func TestJobLogAcrossFailover(t *testing.T) {
	c := newCluster(t)
	c.boot(3)
	const lines = 300
	var want bytes.Buffer
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&want, "line %03d of the job\n", i)
	}
	var pick atomic.Int64
	node := func() *tnode {
		live := c.live()
		return live[int(pick.Add(1))%len(live)]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	send := func(n *tnode, method, path string, body []byte, hdr map[string]string) (int, []byte, http.Header, error) {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		req, _ := http.NewRequestWithContext(rctx, method, n.url+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header, err
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	errs := make(chan error, 2)
	go func() { // the writer
		defer wg.Done()
		var length uint64
		for i := 0; i < lines; {
			line := []byte(fmt.Sprintf("line %03d of the job\n", i))
			st, _, hdr, err := send(node(), "POST", "/api/v1/jobs/build-42/log", line, map[string]string{HeaderLogOffset: strconv.FormatUint(length, 10)})
			switch {
			case err == nil && st == 200:
				length += uint64(len(line))
				i++
				written.Add(1)
			case err == nil && st == 412:
				// The earlier try went through after all.
				got, _ := strconv.ParseUint(hdr.Get(HeaderLogLength), 10, 64)
				if got != length+uint64(len(line)) {
					errs <- fmt.Errorf("append %d: log is %d bytes, expected %d or %d", i, got, length, length+uint64(len(line)))
					return
				}
				length = got
				i++
				written.Add(1)
			default:
				if ctx.Err() != nil {
					errs <- fmt.Errorf("writer gave up at line %d", i)
					return
				}
				time.Sleep(20 * time.Millisecond) // back off while there is no leader
			}
		}
	}()
	var got bytes.Buffer
	go func() { // the reader
		defer wg.Done()
		for got.Len() < want.Len() {
			st, b, hdr, err := send(node(), "GET", fmt.Sprintf("/api/v1/jobs/build-42/log?follow&wait=2s&offset=%d", got.Len()), nil, nil)
			if err != nil || st != 200 {
				if ctx.Err() != nil {
					errs <- fmt.Errorf("reader gave up at byte %d", got.Len())
					return
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if next, _ := strconv.Atoi(hdr.Get(HeaderLogNext)); next != got.Len()+len(b) {
				errs <- fmt.Errorf("read at %d returned %d bytes but says next is %d", got.Len(), len(b), next)
				return
			}
			got.Write(b)
		}
	}()
	for written.Load() < lines/3 {
		if ctx.Err() != nil {
			t.Fatal("the writer made no progress")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.active(5 * time.Second).stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		d := firstDiff(got.Bytes(), want.Bytes())
		lo, hi := max(d-60, 0), min(d+60, got.Len(), want.Len())
		t.Fatalf("the reader got %d bytes, want %d; first difference at %d:\ngot  %q\nwant %q", got.Len(), want.Len(), d, got.Bytes()[lo:hi], want.Bytes()[lo:hi])
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

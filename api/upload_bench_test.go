package api

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var uploadSize = flag.Int64("upload-size", 256<<20, "BenchmarkUpload: bytes per upload")

// genReader yields n bytes of reproducible pseudo-random data without
// holding them in memory.
type genReader struct {
	r    *rand.Rand
	left int64
}

func newGenReader(n int64, seed uint64) *genReader {
	return &genReader{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), left: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	p = p[:len(p)&^7] // sizes are multiples of 8
	if len(p) == 0 {
		g.left = 0
		return 0, io.EOF
	}
	for i := 0; i+8 <= len(p); i += 8 {
		v := g.r.Uint64()
		p[i], p[i+1], p[i+2], p[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		p[i+4], p[i+5], p[i+6], p[i+7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
	}
	g.left -= int64(len(p))
	return len(p), nil
}

// BenchmarkUpload measures the rate of a file upload straight to the active
// node of a three-node cluster in this process (each byte is stored by three
// nodes on this machine's one disk), each upload starting once every node
// holds the one before. It reports MiB/s.
func BenchmarkUpload(b *testing.B) {
	size := *uploadSize &^ 7
	c := newCluster(b)
	c.boot(3)
	act := c.active(10 * time.Second)
	client := &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{TLSClientConfig: testTLS}}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// The data comes from a file (in the page cache, as a client's would be).
		src := filepath.Join(b.TempDir(), "upload")
		f, err := os.Create(src)
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(f, h), newGenReader(size, uint64(i+1))); err != nil {
			b.Fatal(err)
		}
		sha := hex.EncodeToString(h.Sum(nil))
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v1/files/isos/bench/%d.iso", act.url, i), f)
		req.ContentLength = size
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set(HeaderChecksum, sha)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		f.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("upload: %d %s", resp.StatusCode, body)
		}
		total += time.Since(t0)
		// The next upload starts once every node holds this one.
		b.StopTimer()
		c.waitBlobEverywhere(sha, 5*time.Minute)
		b.StartTimer()
	}
	b.ReportMetric(float64(size)*float64(b.N)/(1<<20)/total.Seconds(), "MiB/s")
}

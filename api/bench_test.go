package api

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWrites measures write throughput and latency of a three-node
// cluster on this machine: 256-byte objects PUT to the active node by 1, 16,
// 64 and 256 concurrent writers. It reports writes/s and the p50 and p99
// latency in milliseconds. bench/writes.sh runs it and summarises.
func BenchmarkWrites(b *testing.B) {
	c := newCluster(b)
	c.boot(3)
	act := c.active(10 * time.Second)
	value := fmt.Sprintf(`{"data":%q}`, strings.Repeat("x", 256-len(`{"data":""}`)))
	if len(value) != 256 {
		b.Fatalf("value is %d bytes", len(value))
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0, TLSClientConfig: testTLS}}
	for _, writers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			var next atomic.Int64
			lat := make([][]time.Duration, writers)
			var failed atomic.Int64
			var wg sync.WaitGroup
			// A connection per writer before the clock starts, as clients
			// that keep their connections have: the timed part measures
			// requests, not TCP and TLS handshakes.
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if resp, err := client.Get(act.url + "/api/v1/ha/node"); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v1/objects/bench/w%d-%d", act.url, w, i), strings.NewReader(value))
						req.Header.Set("Authorization", "Bearer "+c.token)
						t0 := time.Now()
						resp, err := client.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
						resp.Body.Close()
						if resp.StatusCode != 200 {
							failed.Add(1)
							continue
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d writes failed", n, b.N)
			}
			all := slices.Concat(lat...)
			slices.Sort(all)
			pct := func(p float64) float64 {
				return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}

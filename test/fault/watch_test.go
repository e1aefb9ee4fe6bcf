package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"

	marp "github.com/mdlayher/arp"

	route "github.com/raftvip/raftvip/client"
)

// claim is an answer that says "I am the active node": a 200 on
// /healthz/active, or an active answer through the VIP. It was true at some
// instant between Start and End.
type claim struct {
	Src   string `json:"src"` // healthz-nX or vip
	Node  string `json:"node"`
	Term  uint64 `json:"term"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
}

// watchers record claims and ARP answers until ctx ends.
type watchers struct {
	c      *cluster
	h      *history
	mu     sync.Mutex
	claims []claim
	arp    []string // violations: one ARP request answered by two MACs
	arpN   int      // ARP requests answered
	wg     sync.WaitGroup
}

func (w *watchers) start(ctx context.Context) {
	for i, host := range w.c.hosts {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.poll(ctx, fmt.Sprintf("healthz-n%d", i+1), "https://"+host.Addr4+":"+apiPort+"/healthz/active")
		}()
	}
	w.wg.Add(2)
	go func() { defer w.wg.Done(); w.poll(ctx, "vip", "https://"+vip+":"+apiPort+route.HANode) }()
	go func() { defer w.wg.Done(); w.watchARP(ctx) }()
}

func (w *watchers) wait() { w.wg.Wait() }

// poll asks url every 20 ms and keeps the answers that claim the active role.
func (w *watchers) poll(ctx context.Context, src, url string) {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		req, _ := http.NewRequestWithContext(rctx, "GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+w.c.token)
		t0 := w.h.now()
		resp, err := w.c.http.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t1 := w.h.now()
			var st struct {
				NodeID string `json:"node_id"`
				ID     string `json:"id"`
				Active bool   `json:"active"`
				Term   uint64 `json:"term"`
			}
			if json.Unmarshal(b, &st) == nil && st.Active && (src == "vip" || resp.StatusCode == 200) {
				node := st.NodeID + st.ID
				w.mu.Lock()
				w.claims = append(w.claims, claim{Src: src, Node: node, Term: st.Term, Start: t0, End: t1})
				w.mu.Unlock()
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// watchARP asks for the VIP's MAC every 50 ms from the client's namespace and
// records a violation when one request is answered by two MACs.
func (w *watchers) watchARP(ctx context.Context) {
	var cl *marp.Client
	err := inNS(w.c.client.NS, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		cl, err = marp.Dial(ifi)
		return err
	})
	if err != nil {
		w.h.violation("arp watcher: %v", err)
		return
	}
	defer cl.Close()
	target := netip.MustParseAddr(vip)
	self := netip.MustParseAddr(w.c.client.Addr4)
	for ctx.Err() == nil {
		if err := cl.Request(target); err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		macs := map[string]bool{}
		_ = cl.SetReadDeadline(time.Now().Add(40 * time.Millisecond))
		for {
			p, _, err := cl.Read()
			if err != nil {
				break
			}
			// Answers to our request only (not gratuitous announcements).
			if p.Operation == marp.OperationReply && p.SenderIP == target && p.TargetIP == self {
				macs[p.SenderHardwareAddr.String()] = true
			}
		}
		w.mu.Lock()
		if len(macs) > 0 {
			w.arpN++
		}
		if len(macs) > 1 {
			w.arp = append(w.arp, fmt.Sprintf("at %v one ARP request for %s was answered by %d MACs: %v", time.Duration(w.h.now()), vip, len(macs), macs))
		}
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
}

// checkClaims finds two owners: two nodes claiming one term, or a claim
// that comes wholly after a claim of a higher term (the older node acted
// after a newer one had been elected).
func checkClaims(claims []claim) []string {
	var bad []string
	byTerm := map[uint64]claim{}
	for _, c := range claims {
		if o, seen := byTerm[c.Term]; seen && o.Node != c.Node {
			bad = append(bad, fmt.Sprintf("two active nodes in term %d: %s (%s at %v) and %s (%s at %v)", c.Term, o.Node, o.Src, time.Duration(o.End), c.Node, c.Src, time.Duration(c.End)))
		} else if !seen {
			byTerm[c.Term] = c
		}
	}
	byEnd := append([]claim(nil), claims...)
	sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].End < byEnd[j].End })
	byStart := append([]claim(nil), claims...)
	sort.Slice(byStart, func(i, j int) bool { return byStart[i].Start < byStart[j].Start })
	var maxc claim
	k := 0
	for _, y := range byStart {
		for k < len(byEnd) && byEnd[k].End < y.Start {
			if byEnd[k].Term > maxc.Term {
				maxc = byEnd[k]
			}
			k++
		}
		if maxc.Term > y.Term {
			bad = append(bad, fmt.Sprintf("%s claimed term %d at %v-%v, after %s had claimed term %d (%s, ended %v)",
				y.Node, y.Term, time.Duration(y.Start), time.Duration(y.End), maxc.Node, maxc.Term, maxc.Src, time.Duration(maxc.End)))
		}
		if len(bad) > 20 {
			break
		}
	}
	return bad
}

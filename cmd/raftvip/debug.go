package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/signal"
	"strings"
	"syscall"
	"time"

	marp "github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/spf13/cobra"
	"golang.org/x/net/ipv6"

	"github.com/raftvip/raftvip/consensus"
)

// newDebugCmd holds tools for tests and benchmarks: a client-side probe of
// the VIP and an observer of ARP / NDP answers for it. Both print one JSON
// object a line and stop by themselves.
func newDebugCmd() *cobra.Command {
	dbg := &cobra.Command{
		Use:    "debug",
		Short:  "Tools for failover tests: probe the VIP, watch ARP/NDP answers for it",
		Hidden: true,
	}
	var url, method, body string
	var headers []string
	var interval, duration time.Duration
	var keepAlive bool
	var trustOpts clientOptions
	probe := &cobra.Command{
		Use:   "probe",
		Short: "Send a request to URL every --interval and print which node answered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < time.Millisecond || duration <= 0 || duration > time.Hour {
				return errors.New("--interval must be at least 1ms and --duration between 0 and 1h")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			hdr := http.Header{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("--header %q must be 'Name: value'", h)
				}
				hdr.Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			trust, err := trustOpts.trust("")
			if err != nil {
				return err
			}
			return runProbe(ctx, cmd.OutOrStdout(), probeRequest{url: url, method: method, body: body, header: hdr, keepAlive: keepAlive, trust: trust}, interval, duration)
		},
	}
	probe.Flags().StringVar(&url, "url", "", "URL to request, such as https://198.18.0.100:8092/api/v1/ha/node")
	probe.Flags().StringVar(&trustOpts.caFile, "ca", "", "PEM file of the CA that signed the API's certificate (default: the cluster CA in --data-dir)")
	probe.Flags().StringVar(&trustOpts.dataDir, "data-dir", "", "a member's data dir, whose tls/ca.crt verifies https:// answers")
	probe.Flags().DurationVar(&interval, "interval", 10*time.Millisecond, "time between requests")
	probe.Flags().StringVar(&method, "method", "GET", "HTTP method")
	probe.Flags().StringVar(&body, "body", "", "request body")
	probe.Flags().StringArrayVar(&headers, "header", nil, "request header 'Name: value' (repeatable)")
	probe.Flags().DurationVar(&duration, "duration", time.Minute, "stop after this long")
	probe.Flags().BoolVar(&keepAlive, "keep-alive", false, "send every request on one kept-alive connection (a new one only after it failed)")

	var iface, vip string
	watch := &cobra.Command{
		Use:   "arpwatch",
		Short: "Print every ARP reply or neighbour advertisement for --vip seen on --interface",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ip, err := netip.ParseAddr(vip)
			if err != nil {
				return fmt.Errorf("--vip %q: %w", vip, err)
			}
			if duration <= 0 || duration > time.Hour {
				return errors.New("--duration must be between 0 and 1h")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, duration)
			defer cancel()
			return runARPWatch(ctx, cmd.OutOrStdout(), iface, ip)
		},
	}
	watch.Flags().StringVar(&iface, "interface", "eth0", "interface to watch")
	watch.Flags().StringVar(&vip, "vip", "", "the VIP")
	watch.Flags().DurationVar(&duration, "duration", time.Minute, "stop after this long")
	dbg.AddCommand(probe, watch)
	return dbg
}

// ProbeResult is one line of 'raftvip debug probe'.
type ProbeResult struct {
	T      int64  `json:"t"` // send time, Unix ns
	RTTus  int64  `json:"rtt_us"`
	Node   string `json:"node,omitempty"` // X-Raftvip-Node of the answer
	Via    string `json:"via,omitempty"`  // X-Raftvip-Forwarded-By: a passive node relayed it
	Status int    `json:"status,omitempty"`
	Err    string `json:"err,omitempty"`
}

type probeRequest struct {
	url, method, body string
	header            http.Header
	keepAlive         bool
	trust             consensus.APITrust
}

func runProbe(ctx context.Context, out io.Writer, pr probeRequest, interval, duration time.Duration) error {
	enc := json.NewEncoder(out)
	// A fresh connection per request (a kept-alive connection would stay
	// with the old node after the VIP moved), unless asked for one.
	tr := pr.trust.Transport((&net.Dialer{Timeout: interval * 5}).DialContext)
	tr.DisableKeepAlives, tr.MaxConnsPerHost = !pr.keepAlive, 1
	c := &http.Client{Transport: tr, Timeout: interval * 5}
	if c.Timeout < 50*time.Millisecond {
		c.Timeout = 50 * time.Millisecond
	}
	end := time.Now().Add(duration)
	t := time.NewTicker(interval)
	defer t.Stop()
	for time.Now().Before(end) {
		t0 := time.Now()
		r := ProbeResult{T: t0.UnixNano()}
		var rd io.Reader
		if pr.body != "" {
			rd = strings.NewReader(pr.body)
		}
		req, err := http.NewRequestWithContext(ctx, pr.method, pr.url, rd)
		if err != nil {
			return err
		}
		req.Header = pr.header.Clone()
		resp, err := c.Do(req)
		if err != nil {
			r.Err = err.Error()
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			r.Status, r.Node, r.Via = resp.StatusCode, resp.Header.Get("X-Raftvip-Node"), resp.Header.Get("X-Raftvip-Forwarded-By")
		}
		r.RTTus = time.Since(t0).Microseconds()
		if err := enc.Encode(r); err != nil {
			return err
		}
		if !time.Now().Before(end) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	return nil
}

// ARPSeen is one line of 'raftvip debug arpwatch'.
type ARPSeen struct {
	T   int64  `json:"t"` // Unix ns
	Op  string `json:"op"`
	MAC string `json:"mac"`
	IP  string `json:"ip"`
}

func runARPWatch(ctx context.Context, out io.Writer, iface string, vip netip.Addr) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	if vip.Is4() {
		c, err := marp.Dial(ifi)
		if err != nil {
			return err
		}
		defer c.Close()
		for ctx.Err() == nil {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			p, _, err := c.Read()
			if err != nil || p.SenderIP != vip {
				continue
			}
			op := "reply"
			if p.Operation == marp.OperationRequest {
				op = "request" // gratuitous: sender = target = VIP
			}
			if err := enc.Encode(ARPSeen{T: time.Now().UnixNano(), Op: op, MAC: p.SenderHardwareAddr.String(), IP: p.SenderIP.String()}); err != nil {
				return err
			}
		}
		return nil
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return err
	}
	defer c.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		return err
	}
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		m, _, _, err := c.ReadFrom()
		if err != nil {
			continue
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != vip {
			continue
		}
		mac := ""
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok {
				mac = l.Addr.String()
			}
		}
		op := "advert"
		if na.Solicited {
			op = "reply"
		}
		if err := enc.Encode(ARPSeen{T: time.Now().UnixNano(), Op: op, MAC: mac, IP: vip.String()}); err != nil {
			return err
		}
	}
	return nil
}

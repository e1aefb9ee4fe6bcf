package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func valid() Config {
	return Config{ASN: 65001, RouterID: "198.18.0.1", VIPs: []netip.Prefix{netip.MustParsePrefix("198.18.1.100/32")},
		Peers: []Peer{{Address: "198.18.0.20", ASN: 65000}}}
}

func TestValidate(t *testing.T) {
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeActiveOnly || c.Holder != "lo" {
		t.Fatalf("defaults not filled: %+v", c)
	}
	cases := map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"zero ASN":          {func(c *Config) { c.ASN = 0 }, "ASN"},
		"AS_TRANS":          {func(c *Config) { c.ASN = 23456 }, "ASN"},
		"router ID v6":      {func(c *Config) { c.RouterID = "2001:db8::1" }, "router ID"},
		"router ID garbage": {func(c *Config) { c.RouterID = "r1" }, "router ID"},
		"multicast VIP":     {func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("224.0.0.5/32")} }, "not a unicast host"},
		"loopback VIP":      {func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32")} }, "not a unicast host"},
		"network VIP":       {func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")} }, "network address"},
		"broadcast VIP":     {func(c *Config) { c.VIPs = []netip.Prefix{netip.MustParsePrefix("198.18.1.255/24")} }, "broadcast"},
		"no VIP":            {func(c *Config) { c.VIPs = nil }, "no VIP"},
		"no peer":           {func(c *Config) { c.Peers = nil }, "no peer"},
		"peer is this node": {func(c *Config) { c.Peers = []Peer{{Address: "127.0.0.1", ASN: 65000}} }, "this node itself"},
		"peer twice":        {func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, "twice"},
		"peer ASN":          {func(c *Config) { c.Peers[0].ASN = 0 }, "ASN"},
		"hold too short":    {func(c *Config) { c.Peers[0].Hold = 1e9 }, "hold"},
		"keepalive vs hold": {func(c *Config) { c.Peers[0].Hold, c.Peers[0].Keepalive = 9e9, 9e9 }, "keepalive"},
		"mode":              {func(c *Config) { c.Mode = "backup" }, "mode"},
		"community":         {func(c *Config) { c.Communities = []string{"65536:1"} }, "community"},
		"large community":   {func(c *Config) { c.LargeCommunities = []string{"1:2"} }, "large community"},
		"next hop":          {func(c *Config) { c.NextHop4 = "router" }, "next hop"},
		"listen port":       {func(c *Config) { c.ListenPort = 70000 }, "listen port"},
	}
	for name, tc := range cases {
		c := valid()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, tc.want)
		}
	}
}

// TestTermFencing: a newer term always makes the better path, and a
// standby path is worse than any active one.
func TestTermFencing(t *testing.T) {
	for _, term := range []uint64{1, 2, 7, 1 << 20, MaxMED - 1} {
		if MED(term+1) >= MED(term) {
			t.Errorf("MED(%d)=%d is not below MED(%d)=%d", term+1, MED(term+1), term, MED(term))
		}
		if LocalPref(term+1) <= LocalPref(term) && term+1 < MaxMED-ActiveLocalPrefBase {
			t.Errorf("LOCAL_PREF(%d) is not above LOCAL_PREF(%d)", term+1, term)
		}
		if MED(term) >= MaxMED || LocalPref(term) <= StandbyLocalPref {
			t.Errorf("term %d is not better than standby", term)
		}
	}
	if c, err := ParseCommunity("65000:100"); err != nil || c != 65000<<16|100 {
		t.Errorf("ParseCommunity: %d %v", c, err)
	}
	if l, err := ParseLargeCommunity("65000:1:7"); err != nil || l.GlobalAdmin != 65000 || l.LocalData2 != 7 {
		t.Errorf("ParseLargeCommunity: %v %v", l, err)
	}
}

func TestBackoff(t *testing.T) {
	var b backoff
	t0 := time.Unix(1000, 0)
	if d := b.next("r", false, t0); d != 0 {
		t.Fatalf("a session that never came up was held down %v", d)
	}
	at := t0
	var got []time.Duration
	for i := 0; i < 9; i++ {
		b.next("r", true, at)
		at = at.Add(5 * time.Second) // up for 5 s, then down: a flap
		got = append(got, b.next("r", false, at))
	}
	want := []time.Duration{0, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, 64 * time.Second, BackoffMax, BackoffMax}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	// Up for longer than BackoffReset: the history is forgotten.
	b.next("r", true, at)
	if d := b.next("r", false, at.Add(BackoffReset)); d != 0 {
		t.Fatalf("after a long stable session the first drop was held down %v", d)
	}
	// Peers are independent.
	if d := b.next("other", false, at); d != 0 {
		t.Fatalf("another peer inherited the history: %v", d)
	}
}

package consensus

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"
)

// Timing holds the Raft timers and the active lease. The lease must be
// shorter than the heartbeat timeout by a margin: a follower starts an
// election only after a heartbeat timeout without contact, so an active node
// whose lease runs from the start of its last confirmed quorum round lets go
// before anyone else can be elected (DESIGN.md, invariant 1).
type Timing struct {
	Heartbeat     time.Duration `json:"heartbeat"`
	Election      time.Duration `json:"election"`
	LeaderLease   time.Duration `json:"leader_lease"`
	ActiveLease   time.Duration `json:"active_lease"`
	CommitTimeout time.Duration `json:"commit_timeout"`
}

// Profiles are the named timing profiles. A follower notices a dead leader
// between one and three heartbeat timeouts after its last contact, and
// hashicorp/raft's voters refuse a candidate while they still know a leader,
// so a failover takes about two heartbeat timeouts; the profiles are chosen
// for that (bench/failover.sh measures them).
var Profiles = map[string]Timing{
	// default: a LAN with ordinary load; failover in well under a second.
	"default": {Heartbeat: 350 * time.Millisecond, Election: 350 * time.Millisecond, LeaderLease: 175 * time.Millisecond, ActiveLease: 250 * time.Millisecond, CommitTimeout: 50 * time.Millisecond},
	// fast: a quiet LAN with little scheduling delay; failover in about 250 ms.
	"fast": {Heartbeat: 80 * time.Millisecond, Election: 80 * time.Millisecond, LeaderLease: 40 * time.Millisecond, ActiveLease: 55 * time.Millisecond, CommitTimeout: 10 * time.Millisecond},
}

// DefaultTiming returns the "default" profile.
func DefaultTiming() Timing { return Profiles["default"] }

// leaseMargin is the safety margin between the active lease and the heartbeat
// timeout: clock-rate drift and scheduling delay.
func (t Timing) leaseMargin() time.Duration {
	m := t.Heartbeat / 10
	if m < 20*time.Millisecond {
		m = 20 * time.Millisecond
	}
	return m
}

// Validate checks the combination of timers.
func (t Timing) Validate() error {
	switch {
	case t.Heartbeat < 50*time.Millisecond:
		return fmt.Errorf("heartbeat timeout %v is below 50ms", t.Heartbeat)
	case t.Election < t.Heartbeat:
		return fmt.Errorf("election timeout %v is shorter than heartbeat timeout %v", t.Election, t.Heartbeat)
	case t.LeaderLease <= 0 || t.LeaderLease > t.Heartbeat:
		return fmt.Errorf("leader lease %v must be positive and at most the heartbeat timeout %v", t.LeaderLease, t.Heartbeat)
	case t.ActiveLease <= 0 || t.ActiveLease+t.leaseMargin() >= t.Heartbeat:
		return fmt.Errorf("active lease %v plus margin %v must be shorter than the heartbeat timeout %v", t.ActiveLease, t.leaseMargin(), t.Heartbeat)
	case t.CommitTimeout <= 0:
		return fmt.Errorf("commit timeout must be positive")
	}
	return nil
}

// Config is what a node needs to start. Fields set in a valid ha-state.json
// win over these.
type Config struct {
	DataDir       string
	NodeID        string
	ConsensusAddr string // host:port, reachable by the other members
	APIURL        string
	VirtInterface string
	Observer      bool
	// APIHosts are the host names and addresses the API's certificate is
	// issued for (besides localhost and APIServerName): the hosts of the
	// API URL and address, and the VIPs.
	APIHosts []string
	// AwaitReadiness makes the node count as not ready until SetReadiness
	// is first called: an agent whose announcer starts after Raft does
	// (its BGP sessions not yet up) is then not chosen to take over.
	AwaitReadiness bool
	Timing         Timing
	Logger         *slog.Logger
}

// Validate checks the configuration and names the setting at fault.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	if c.ConsensusAddr != "" {
		host, port, err := net.SplitHostPort(c.ConsensusAddr)
		if err != nil || port == "" || port == "0" {
			return fmt.Errorf("--consensus-addr %q must be host:port", c.ConsensusAddr)
		}
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			return fmt.Errorf("--consensus-addr %q must name an address the other members can reach, not %q", c.ConsensusAddr, host)
		}
	}
	if c.APIURL != "" {
		u, err := url.Parse(c.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--api-url %q must be an http:// or https:// URL", c.APIURL)
		}
	}
	if err := c.Timing.Validate(); err != nil {
		return fmt.Errorf("timing: %w", err)
	}
	return nil
}

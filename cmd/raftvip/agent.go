package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/raftvip/raftvip/announce"
	"github.com/raftvip/raftvip/announce/arp"
	"github.com/raftvip/raftvip/announce/bgp"
	"github.com/raftvip/raftvip/announce/fence"
	"github.com/raftvip/raftvip/api"
	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/healthz"
	"github.com/raftvip/raftvip/store"
)

// agentOptions are the agent's settings, parsed from flags, the environment
// and a config file, in that order of precedence.
type agentOptions struct {
	configFile     string
	dataDir        string
	nodeID         string
	consensusAddr  string
	apiAddr        string
	apiURL         string
	apiPlain       bool
	apiCert        string
	apiKey         string
	virtInterface  string
	virtAddr       string
	observer       bool
	timing         string
	bootstrap      bool
	joinURL        string
	joinToken      string
	joinTokenFile  string
	maxBody        int64
	maxFile        int64
	vips           []string
	vipScript      string
	arpRefresh     time.Duration
	notifyScript   string
	notifyTimeout  time.Duration
	healthAddr     string
	vipMode        string
	bgpASN         string
	bgpRouterID    string
	bgpListenPort  int
	bgpPeers       []string
	bgpMode        string
	bgpCommunities []string
	bgpLarge       []string
	bgpNextHops    []string
	bgpHolder      string
	fence          bool
	fenceTable     string
	agentAddr      string
	agentWeight    int
	drainDelay     time.Duration
	maxLagEntries  uint64
	maxLagTime     time.Duration
	logLevel       string
	logFormat      string
}

func newAgentCmd() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a raftvip node",
		Long: `Run a raftvip node: Raft on --consensus-addr (mutual TLS between members) and
the client API on --api-addr.

A new node waits until it is initialised ('raftvip ha init', or --bootstrap)
or enrolled into a cluster ('raftvip ha enroll' on the active node, or
--join URL --token-file F). Once its ha-state.json is valid, that file wins over
flags: a conflicting flag is reported and ignored.

Every flag can also be set in the environment as RAFTVIP_<FLAG> (for example
RAFTVIP_CONSENSUS_ADDR) or in a JSON config file given with --config, whose
keys are the flag names. A flag on the command line wins over the
environment, which wins over the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("token") {
				return errors.New("--token would show the join token to every user of this machine (/proc/PID/cmdline): put it in a file for --token-file, or in RAFTVIP_TOKEN")
			}
			if err := applyEnvAndConfig(cmd.Flags(), o.configFile); err != nil {
				return err
			}
			if o.joinToken == "" && o.joinTokenFile != "" {
				t, err := readSecretFile(o.joinTokenFile)
				if err != nil {
					return fmt.Errorf("--token-file: %w", err)
				}
				o.joinToken = t
			}
			return runAgent(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "JSON config file; keys are flag names")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir, "data directory (ha-state.json, Raft log, store, TLS material)")
	f.StringVar(&o.nodeID, "node-id", "", "this node's ID (default: a new UUID; never changes once joined)")
	f.StringVar(&o.consensusAddr, "consensus-addr", "", "host:port for Raft and member traffic; an address of this host, not the VIP")
	f.StringVar(&o.apiAddr, "api-addr", "127.0.0.1:8092", "host:port the client API listens on")
	f.StringVar(&o.apiURL, "api-url", "", "URL other nodes and clients use for this node's API (default: https://<api-addr>)")
	f.BoolVar(&o.apiPlain, "api-plain", false, "serve the API in plain HTTP instead of TLS: tokens and data cross the network in clear text")
	f.StringVar(&o.apiCert, "api-cert", "", "PEM certificate (chain) the API presents once the node is in a cluster, instead of one from the cluster CA; read again when it changes")
	f.StringVar(&o.apiKey, "api-key", "", "PEM private key of --api-cert")
	f.StringVar(&o.virtInterface, "virt-interface", "", "network interface that carries the VIP on this node")
	f.StringVar(&o.virtAddr, "virt-addr", "", "the cluster's virtual IP, recorded when the cluster is created with --bootstrap")
	f.BoolVar(&o.observer, "observer", false, "vote and replicate but never become active")
	f.StringVar(&o.timing, "timing", "default", "timing profile: default or fast (a quiet LAN)")
	f.BoolVar(&o.bootstrap, "bootstrap", false, "create a new one-node cluster of this node if it belongs to none")
	f.StringVar(&o.joinURL, "join", "", "API URL of a cluster member to join, with --token")
	f.StringVar(&o.joinToken, "token", "", "join token, only from RAFTVIP_TOKEN or the config file (on the command line every user could read it in /proc)")
	f.StringVar(&o.joinTokenFile, "token-file", "", "file holding the join token from 'raftvip ha token', with --join (or the token itself in RAFTVIP_TOKEN)")
	f.StringSliceVar(&o.vips, "vip", nil, "virtual IP with its subnet's prefix length (198.18.0.100/24, 2001:db8::100/64), held and answered for by the active node; repeat for several")
	f.StringVar(&o.vipScript, "virt-interface-script", "", "script called as 'SCRIPT add|remove IFACE ADDR/PREFIX' instead of raftvip adding the VIP (gives up process-answered ARP fencing)")
	f.DurationVar(&o.arpRefresh, "arp-refresh", 3*time.Second, "gratuitous ARP / unsolicited NA period while active (negative: only on takeover)")
	f.StringVar(&o.notifyScript, "notify-script", "", "script run on every transition as 'SCRIPT active|passive|fault' with RAFTVIP_STATE, RAFTVIP_NODE, RAFTVIP_TERM, RAFTVIP_VIPS in its environment")
	f.DurationVar(&o.notifyTimeout, "notify-timeout", 30*time.Second, "how long the notify script may run")
	f.StringVar(&o.vipMode, "vip-mode", "arp", "how the VIP reaches the active node: arp (flat network), bgp (routers) or external (no --vip: a load balancer checks /healthz/active)")
	f.StringVar(&o.bgpASN, "bgp-asn", "", "local AS number (every node of the cluster uses the same)")
	f.StringVar(&o.bgpRouterID, "bgp-router-id", "", "BGP router ID, unique per node (default: the IPv4 consensus address)")
	f.IntVar(&o.bgpListenPort, "bgp-listen-port", 179, "port for routers that connect to this node (-1: do not listen)")
	f.StringArrayVar(&o.bgpPeers, "bgp-peer", nil, "router: ADDR,asn=N[,password=P][,multihop=TTL][,hold=90s][,keepalive=30s][,passive] (repeatable)")
	f.StringVar(&o.bgpMode, "bgp-mode", "active-only", "passive nodes withdraw the VIP (active-only) or announce it less preferred (standby)")
	f.StringArrayVar(&o.bgpCommunities, "bgp-community", nil, "community ASN:VALUE added to the announcements (repeatable)")
	f.StringArrayVar(&o.bgpLarge, "bgp-large-community", nil, "large community G:D1:D2 added to the announcements (repeatable)")
	f.StringArrayVar(&o.bgpNextHops, "bgp-next-hop", nil, "next hop to announce, per family (default: this node's address on each session)")
	f.StringVar(&o.bgpHolder, "bgp-holder", "lo", "interface that holds the VIP while it is announced (lo or a dummy; - for none)")
	f.BoolVar(&o.fence, "fence", true, "hold the active lease in the kernel too (nftables): VIP traffic is dropped when the lease ends, even if this agent is killed or frozen")
	f.StringVar(&o.fenceTable, "fence-table", fence.DefaultTable, "nftables table (family inet) the fence owns")
	f.StringVar(&o.healthAddr, "health-addr", "", "also serve /healthz/* and /metrics in plain HTTP on this host:port (for load balancers without client TLS)")
	f.StringVar(&o.agentAddr, "agent-check-addr", "", "answer HAProxy agent checks on this host:port")
	f.IntVar(&o.agentWeight, "agent-weight", 100, "weight (percent) the agent check announces on the active node")
	f.DurationVar(&o.drainDelay, "drain-delay", 300*time.Millisecond, "on SIGTERM, how long the active node answers 503/drain before handing over")
	f.Uint64Var(&o.maxLagEntries, "max-lag-entries", 1000, "entries a passive node may lag and still pass /healthz/passive and /healthz/ready")
	f.DurationVar(&o.maxLagTime, "max-lag-time", 2*time.Second, "time since a passive node heard from the leader, at most, to pass /healthz/passive")
	f.Int64Var(&o.maxBody, "max-body", api.DefaultMaxBody, "largest request body the API accepts, in bytes")
	f.Int64Var(&o.maxFile, "max-file-size", api.DefaultMaxFileSize, "largest file an upload may carry, in bytes")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

// applyEnvAndConfig fills every flag not given on the command line from
// RAFTVIP_<FLAG>, then from the config file.
func applyEnvAndConfig(fs *pflag.FlagSet, configFile string) error {
	if v := os.Getenv("RAFTVIP_CONFIG"); configFile == "" && v != "" {
		configFile = v
	}
	fileVals := map[string]any{}
	if configFile != "" {
		b, err := os.ReadFile(configFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		if fileVals, err = parseConfigFile(b); err != nil {
			return fmt.Errorf("--config %s: %w", configFile, err)
		}
		var unknown []string
		for k := range fileVals {
			if fs.Lookup(k) == nil || k == "config" {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("--config %s: unknown settings %s (keys are the agent's flag names)", configFile, strings.Join(unknown, ", "))
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" {
			return
		}
		env := "RAFTVIP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			return
		}
		if v, ok := fileVals[f.Name]; ok {
			if err := fs.Set(f.Name, fmt.Sprint(v)); err != nil {
				errs = append(errs, fmt.Errorf("--config %s: %s=%v: %w", configFile, f.Name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// parseConfigFile reads a config file: one I-JSON object whose values are
// strings, numbers, booleans or arrays of strings (flag values).
func parseConfigFile(b []byte) (map[string]any, error) {
	if len(b) > 1<<20 {
		return nil, errors.New("larger than 1 MiB")
	}
	if err := store.CheckJSON(b); err != nil {
		return nil, err
	}
	vals := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&vals); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	for k, v := range vals {
		switch v := v.(type) {
		case string, json.Number, bool:
		case []any:
			for _, e := range v {
				if _, ok := e.(string); !ok {
					return nil, fmt.Errorf("%s: a list must hold strings", k)
				}
			}
		default:
			return nil, fmt.Errorf("%s: a setting is a string, number, boolean or list of strings", k)
		}
	}
	return vals, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q must be debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q must be text or json", format)
}

// config turns the options into a consensus.Config, naming the flag at fault.
func (o *agentOptions) config(logger *slog.Logger) (consensus.Config, error) {
	t, ok := consensus.Profiles[o.timing]
	if !ok {
		return consensus.Config{}, fmt.Errorf("--timing %q must be default or fast", o.timing)
	}
	if o.bootstrap && o.joinURL != "" {
		return consensus.Config{}, errors.New("--bootstrap and --join exclude each other: create a cluster or join one")
	}
	if (o.joinURL == "") != (o.joinToken == "") {
		return consensus.Config{}, errors.New("--join and a join token (--token-file or RAFTVIP_TOKEN) go together: run 'raftvip ha token' on a member for the token")
	}
	if o.maxBody < 1024 {
		return consensus.Config{}, fmt.Errorf("--max-body %d is below 1024 bytes", o.maxBody)
	}
	if o.maxFile < 1 {
		return consensus.Config{}, fmt.Errorf("--max-file-size %d must be a positive number of bytes", o.maxFile)
	}
	host, port, err := net.SplitHostPort(o.apiAddr)
	if err != nil || port == "" {
		return consensus.Config{}, fmt.Errorf("--api-addr %q must be host:port", o.apiAddr)
	}
	apiURL := o.apiURL
	if apiURL == "" {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return consensus.Config{}, fmt.Errorf("--api-addr %q listens on every address: give --api-url, the URL other nodes use to reach this one", o.apiAddr)
		}
		scheme := "https://"
		if o.apiPlain {
			scheme = "http://"
		}
		apiURL = scheme + o.apiAddr
	}
	if err := o.checkAPITLSFlags(); err != nil {
		return consensus.Config{}, err
	}
	if _, ok := announcers[o.vipMode]; !ok {
		return consensus.Config{}, fmt.Errorf("--vip-mode %q must be arp, bgp or external", o.vipMode)
	}
	if o.vipMode == "external" && len(o.vips) > 0 {
		return consensus.Config{}, errors.New("--vip-mode external announces nothing: leave --vip out (a load balancer sends traffic to the node whose /healthz/active answers 200)")
	}
	vips := make([]netip.Prefix, len(o.vips))
	for i, v := range o.vips {
		if vips[i], err = parseVIP(v, o.vipMode == "bgp"); err != nil {
			return consensus.Config{}, err
		}
	}
	if err := o.checkAnnouncerFlags(vips); err != nil {
		return consensus.Config{}, err
	}
	return consensus.Config{DataDir: o.dataDir, NodeID: o.nodeID, ConsensusAddr: o.consensusAddr, APIURL: apiURL,
		VirtInterface: o.virtInterface, Observer: o.observer, Timing: t, Logger: logger, AwaitReadiness: len(o.vips) > 0,
		APIHosts: o.apiHosts(apiURL)}, nil
}

func runAgent(ctx context.Context, o *agentOptions) error {
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	cfg, err := o.config(logger)
	if err != nil {
		return err
	}
	var user *userCert
	if o.apiCert != "" {
		if user, err = newUserCert(o.apiCert, o.apiKey); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", o.apiAddr)
	if err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	node, err := consensus.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	if o.apiPlain {
		logger.Warn("the API serves plain HTTP (--api-plain): bearer tokens, join tokens and data cross the network in clear text")
	} else {
		ln = tls.NewListener(ln, apiTLSConfig(node, user))
	}
	if u, err := url.Parse(node.HAState().ApiUrl); err == nil && node.HAState().Valid && (u.Scheme == "https") == o.apiPlain {
		logger.Warn("ha-state.json's ApiUrl and --api-plain disagree: other nodes and clients use "+u.String(), "api_plain", o.apiPlain)
	}
	logger = logger.With("node", node.ID())
	apiSrv := api.New(node, logger, o.maxBody)
	node.SetRPCHandler(apiSrv)
	health := &healthSource{node: node}
	var ann announce.Announcer
	// /metrics is served before the announcer exists: it reads the
	// announcer through annRef, set once the announcer is made.
	var annRef atomic.Pointer[announce.Announcer]
	metrics := healthz.NewMetrics(health, func() []string {
		a := annRef.Load()
		if a == nil || *a == nil {
			return nil
		}
		var out []string
		for _, p := range (*a).Announced() {
			out = append(out, p.String())
		}
		return out
	})
	apiSrv.ObserveApply(metrics.ObserveApply)
	apiSrv.SetMaxFileSize(o.maxFile)
	checks := healthz.New(health, healthz.Options{MaxLagEntries: o.maxLagEntries, MaxLagTime: o.maxLagTime, Observe: metrics.ObserveHealth})
	probes := http.NewServeMux()
	probes.Handle(healthz.Prefix, checks)
	probes.Handle("/metrics", metrics.Handler())
	top := http.NewServeMux()
	top.Handle(healthz.Prefix, checks)
	top.Handle("/metrics", metrics.Handler())
	top.Handle("/", apiSrv)
	srv := &http.Server{Handler: api.Guard(top), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
	serveErr := make(chan error, 3)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("API listening", "addr", ln.Addr().String(), "url", cfg.APIURL, "tls", !o.apiPlain)
	servers := []*http.Server{srv}
	var agentLn net.Listener
	if o.healthAddr != "" {
		hl, err := net.Listen("tcp", o.healthAddr)
		if err != nil {
			shutdown(logger, node, servers, nil, false)
			return fmt.Errorf("--health-addr: %w", err)
		}
		// Load balancers' probes: short requests with no body, kept-alive
		// connections closed when idle.
		hs := &http.Server{Handler: api.Guard(probes), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, ErrorLog: srv.ErrorLog}
		servers = append(servers, hs)
		go func() { serveErr <- hs.Serve(hl) }()
	}
	if o.agentAddr != "" {
		if agentLn, err = net.Listen("tcp", o.agentAddr); err != nil {
			shutdown(logger, node, servers, nil, false)
			return fmt.Errorf("--agent-check-addr: %w", err)
		}
		defer agentLn.Close()
		go func() {
			if err := healthz.ServeAgent(agentLn, health, o.agentWeight); err != nil {
				serveErr <- fmt.Errorf("agent check: %w", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	st := node.HAState()
	switch {
	case st.Valid && (o.bootstrap || o.joinURL != ""):
		logger.Warn("this node already belongs to a cluster; --bootstrap and --join are ignored", "cluster", st.HaID)
	case st.Valid:
		logger.Info("rejoining cluster", "cluster", st.HaID)
	case o.bootstrap:
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = node.Init(ictx, consensus.InitOptions{VirtAddr: o.virtAddr})
		cancel()
		if err != nil {
			shutdown(logger, node, servers, nil, false)
			return fmt.Errorf("--bootstrap: %w", err)
		}
		logger.Info("created a new cluster", "cluster", node.HAState().HaID)
	case o.joinURL != "":
		jctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = node.Join(jctx, o.joinURL, o.joinToken)
		cancel()
		if err != nil {
			shutdown(logger, node, servers, nil, false)
			return fmt.Errorf("--join: %w", err)
		}
	default:
		logger.Info("waiting to be initialised ('raftvip ha init') or enrolled ('raftvip ha enroll " + cfg.APIURL + "' on the active node)")
	}

	// The fence before the announcer: VIP traffic is dropped from the
	// start, until the node holds a lease.
	fen, err := newFence(o)
	if err != nil {
		shutdown(logger, node, servers, nil, false)
		return err
	}
	if fen != nil {
		defer func() {
			if err := fen.Close(); err != nil {
				logger.Warn("removing the kernel fence", "err", err)
			}
		}()
		node.SetKernelLease(fen)
		logger.Info("kernel fence installed", "table", "inet "+o.fenceTable)
	}
	ann, err = newAnnouncer(ctx, logger, o, node)
	if err != nil {
		shutdown(logger, node, servers, nil, false)
		return err
	}
	annRef.Store(&ann)
	// The watcher asks the announcer: it stops before the announcer does.
	var ready *readiness
	if check := readinessCheck(o, node, ann); check != nil {
		ready = watchReadiness(check, 250*time.Millisecond)
		node.SetReadiness(ready.NotReady)
	} else {
		node.SetReadiness(nil) // nothing to wait for
	}
	var hooks *notifier
	if o.notifyScript != "" {
		hooks = newNotifier(o.notifyScript, o.notifyTimeout, node.ID(), o.vips, logger.With("component", "notify"))
	}
	followDone := follow(ctx, logger, node, ann, hooks, metrics, forwardStrays(logger, node, fen))
	select {
	case <-ctx.Done():
		logger.Info("stopping")
	case err := <-serveErr:
		ready.Close()
		shutdown(logger, node, servers, ann, false)
		<-followDone
		hooks.close()
		return fmt.Errorf("API server: %w", err)
	}
	// Graceful stop: answer 503 and "drain" first, so that load balancers
	// stop sending new requests here, then hand over, then stop.
	health.stopping.Store(true)
	if node.IsActive() && o.drainDelay > 0 {
		logger.Info("draining before handing over", "for", o.drainDelay)
		time.Sleep(o.drainDelay)
	}
	ready.Close()
	shutdown(logger, node, servers, ann, true)
	<-followDone
	hooks.close()
	return nil
}

// readinessCheck says how to tell whether the announcer can do its job;
// nil when there is none (no --vip: a load balancer decides).
func readinessCheck(o *agentOptions, node *consensus.Node, ann announce.Announcer) func(context.Context) string {
	if b, ok := ann.(*bgp.Announcer); ok {
		return bgpReady(b)
	}
	if ann == nil || o.vipScript != "" {
		return nil
	}
	st := node.HAState()
	return linkReady(o.virtIface(&st))
}

// checkAnnouncerFlags checks the flags of the announcer --vip asks for
// before the agent opens anything (a bad --bgp-asn used to be reported
// after --bootstrap had already made a cluster): the BGP settings, or the
// VirtInterface (from ha-state.json if it names one) for ARP.
func (o *agentOptions) checkAnnouncerFlags(vips []netip.Prefix) error {
	if len(vips) == 0 {
		return nil
	}
	st, _ := consensus.ReadHAState(o.dataDir)
	if o.vipMode == "bgp" {
		addr := o.consensusAddr
		if st != nil && st.Valid && st.ConsensusAddr != "" {
			addr = st.ConsensusAddr
		}
		_, err := o.bgpConfig(addr, vips)
		return err
	}
	iface, err := o.requireVirtIface(st)
	if err != nil {
		return err
	}
	if o.vipScript == "" {
		if _, err := net.InterfaceByName(iface); err != nil {
			return fmt.Errorf("--virt-interface %q: %w", iface, err)
		}
	}
	return nil
}

// newFence installs the kernel fence for --vip, unless --fence=false.
func newFence(o *agentOptions) (*fence.Fence, error) {
	if len(o.vips) == 0 || !o.fence {
		return nil, nil
	}
	vips := make([]netip.Prefix, len(o.vips))
	for i, v := range o.vips {
		vips[i], _ = parseVIP(v, o.vipMode == "bgp")
	}
	f, err := fence.New(fence.Config{Table: o.fenceTable, VIPs: vips})
	if err != nil {
		return nil, fmt.Errorf("%w; the kernel fence needs nftables (Linux nf_tables) and CAP_NET_ADMIN: pass --fence=false to run without it, relying on the agent alone to let go of the VIP", err)
	}
	return f, nil
}

// announcers are the ways the VIP reaches the active node, by --vip-mode
// (DESIGN.md's table). In external mode (no --vip) nothing is announced:
// a load balancer checks /healthz/active and decides.
var announcers = map[string]func(ctx context.Context, logger *slog.Logger, o *agentOptions, node *consensus.Node) (announce.Announcer, error){
	"arp": newARP,
	"bgp": newBGPAnnouncer,
	"external": func(context.Context, *slog.Logger, *agentOptions, *consensus.Node) (announce.Announcer, error) {
		return nil, nil
	},
}

// mode is the announcer --vip-mode and --vip ask for: external without a
// VIP.
func (o *agentOptions) mode() string {
	if len(o.vips) == 0 {
		return "external"
	}
	return o.vipMode
}

// newAnnouncer makes the announcer of the agent's mode (nil in external
// mode).
func newAnnouncer(ctx context.Context, logger *slog.Logger, o *agentOptions, node *consensus.Node) (announce.Announcer, error) {
	return announcers[o.mode()](ctx, logger, o, node)
}

// newBGPAnnouncer makes the BGP announcer for --vip.
func newBGPAnnouncer(ctx context.Context, logger *slog.Logger, o *agentOptions, node *consensus.Node) (announce.Announcer, error) {
	vips := make([]netip.Prefix, len(o.vips))
	for i, v := range o.vips {
		vips[i], _ = parseVIP(v, true)
	}
	a, err := newBGP(ctx, logger, o, node, vips)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return a, nil
}

// virtIface is the VirtInterface: ha-state.json's once it names one (it
// wins over flags), else --virt-interface. st may be nil.
func (o *agentOptions) virtIface(st *consensus.HAState) string {
	if st != nil && st.Valid && st.VirtInterface != "" {
		return st.VirtInterface
	}
	return o.virtInterface
}

// requireVirtIface is virtIface, which ARP mode cannot do without.
func (o *agentOptions) requireVirtIface(st *consensus.HAState) (string, error) {
	if iface := o.virtIface(st); iface != "" {
		return iface, nil
	}
	return "", errors.New("--vip needs --virt-interface, the interface on the VIP's network")
}

// newARP makes the ARP/NDP announcer for --vip.
func newARP(_ context.Context, logger *slog.Logger, o *agentOptions, node *consensus.Node) (announce.Announcer, error) {
	st := node.HAState()
	iface, err := o.requireVirtIface(&st)
	if err != nil {
		return nil, err
	}
	vips := make([]netip.Prefix, len(o.vips))
	for i, v := range o.vips {
		vips[i] = netip.MustParsePrefix(v)
	}
	return arp.New(arp.Config{Interface: iface, VIPs: vips, Active: node.IsActive, Refresh: o.arpRefresh,
		Script: o.vipScript, Logger: logger.With("component", "arp")})
}

// follow keeps the announcer and the notify hooks in step with the node's
// active signal until the node closes. The returned channel closes when it
// has stopped.
//
// takeover, when not nil, is called with the previous leader's ID when this
// node becomes active after another node led, before the VIPs are
// announced.
func follow(ctx context.Context, logger *slog.Logger, node *consensus.Node, ann announce.Announcer, hooks *notifier, metrics *healthz.Metrics, takeover func(prev string)) <-chan struct{} {
	done := make(chan struct{})
	ch, cancel := node.Subscribe()
	go func() {
		defer close(done)
		defer cancel()
		was, leader, first := false, "", true
		var drain time.Time
		other := "" // the last leader that was not this node
		for s := range ch {
			if s.Active && !was && other != "" && takeover != nil {
				takeover(other)
			}
			if s.LeaderID != "" && s.LeaderID != node.ID() {
				other = s.LeaderID
			}
			if s.LeaderID != leader {
				if s.LeaderID != "" {
					metrics.LeaderChanged()
				}
				leader = s.LeaderID
			}
			if ann != nil && (first || s.Active != was || s.Active || !s.Drain.Equal(drain)) {
				first = false
				drain = s.Drain
				// Set again while active (a new term, or a member that
				// answers heartbeats again after a heal) re-announces.
				if err := ann.Set(ctx, announce.Desired{Active: s.Active, Term: s.Term, Drain: s.Drain}); err != nil {
					logger.Error("announcing the VIPs", "active", s.Active, "err", err)
					hooks.notify("fault", s.Term, err.Error())
					was = s.Active
					continue
				}
			}
			if s.Active != was {
				state := "passive"
				if s.Active {
					state = "active"
				}
				hooks.notify(state, s.Term, "")
				was = s.Active
			}
		}
	}()
	return done
}

// shutdown stops a node in order: hand leadership over (if active and
// graceful), stop the API, then close consensus and storage.
func shutdown(logger *slog.Logger, node *consensus.Node, servers []*http.Server, ann announce.Announcer, graceful bool) {
	if graceful && node.IsActive() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		to, err := node.Transfer(ctx, "")
		cancel()
		if err != nil {
			logger.Warn("could not hand leadership over before stopping", "err", err)
		} else {
			logger.Info("handed leadership over", "to", to)
		}
		// Make-before-break: keep accepting what still reaches this node
		// (the API included) until the drain of the last lease ends and
		// the announcer has let go.
		if end := node.DrainUntil(); !end.IsZero() {
			logger.Info("draining the VIPs until the successor's announcement has moved them", "until", end.Format("15:04:05.000"))
			time.Sleep(time.Until(end))
		}
	}
	if ann != nil {
		if err := ann.Close(); err != nil {
			logger.Warn("releasing the VIPs", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	for _, srv := range servers {
		_ = srv.Shutdown(ctx)
	}
	cancel()
	if err := node.Close(); err != nil {
		logger.Warn("closing node", "err", err)
	}
}

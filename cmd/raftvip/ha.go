package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftvip/raftvip/api"
	route "github.com/raftvip/raftvip/client"
	"github.com/raftvip/raftvip/consensus"
	"github.com/raftvip/raftvip/store"
)

// clientRun wraps a command body that needs an API client and a context
// bounded by --timeout.
func clientRun(o *clientOptions, run func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
		defer cancel()
		return run(ctx, c, cmd, args)
	}
}

func newHACmd() *cobra.Command {
	o := &clientOptions{}
	ha := &cobra.Command{
		Use:   "ha",
		Short: "Form, grow, shrink and inspect the cluster",
		Long: `Commands for the cluster itself, named as in Digital Rebar Provision's
'drpcli system ha'. They talk to the node at --endpoint.`,
	}
	o.register(ha)

	var virtAddr string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Make the node at --endpoint a new one-node cluster",
		Long: `Make the node at --endpoint a new one-node cluster: it generates the cluster
ID, the cluster's certificate authority and the API token, and becomes active.
Cluster-wide settings such as --virt-addr can be chosen only now.`,
		Args: cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var st consensus.NodeStatus
			if _, err := c.Do(ctx, "POST", route.HAInit, consensus.InitOptions{VirtAddr: virtAddr}, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s created; %s is %s\n", st.ClusterID, st.ID, st.Role)
			fmt.Fprintf(cmd.OutOrStdout(), "the API token is in %s on that node (Token); enroll more nodes with 'raftvip ha enroll URL'\n", consensus.HAStateFile)
			return nil
		}),
	}
	initCmd.Flags().StringVar(&virtAddr, "virt-addr", "", "the cluster's virtual IP (CIDR, such as 198.18.0.100/24)")

	var ttl time.Duration
	tokenCmd := &cobra.Command{
		Use:   "token",
		Short: "Issue a join token for a new node",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var intro api.Introduction
			if _, err := c.Do(ctx, "POST", route.HAToken, api.TokenRequest{TTL: ttl.String()}, &intro); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), intro.Token)
			return nil
		}),
	}
	tokenCmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid (at most 168h)")

	var secretFile string
	enrollCmd := &cobra.Command{
		Use:   "enroll NEW-NODE-API-URL",
		Short: "Enroll a running, unjoined node into the cluster",
		Long: `Enroll the node whose API is at NEW-NODE-API-URL: the cluster issues a join
token and the new node joins with it. The new node's earlier data, if any, is
moved aside and replaced by the cluster's.

A node that belongs to no cluster answers only to its bootstrap secret, which
it writes to the bootstrap-secret file in its data dir at first start: give
that file (copied from the new node) with --secret-file, or the secret itself
in RAFTVIP_ENROLL_SECRET.`,
		Args: cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			if err := checkURL(args[0]); err != nil {
				return err
			}
			secret := os.Getenv("RAFTVIP_ENROLL_SECRET")
			if secret == "" && secretFile != "" {
				s, err := readSecretFile(secretFile)
				if err != nil {
					return fmt.Errorf("--secret-file: %w", err)
				}
				secret = s
			}
			if secret == "" {
				return errors.New("the new node's bootstrap secret is needed: --secret-file (its data dir's bootstrap-secret file) or RAFTVIP_ENROLL_SECRET")
			}
			var st consensus.NodeStatus
			if _, err := c.Do(ctx, "POST", route.HAMembers, api.EnrollRequest{URL: args[0], Secret: secret}, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s (%s) into cluster %s; it is %s\n", st.ID, st.ConsensusAddr, st.ClusterID, st.Role)
			return nil
		}),
	}

	introCmd := &cobra.Command{
		Use:   "introduction FILE",
		Short: "Write an introduction file for a new node (first of two steps; then 'ha join FILE' on it)",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			var intro api.Introduction
			if _, err := c.Do(ctx, "POST", route.HAToken, api.TokenRequest{TTL: ttl.String()}, &intro); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(intro, "", "  ")
			if err := os.WriteFile(args[0], append(b, '\n'), 0o600); err != nil {
				return fmt.Errorf("writing the introduction: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; copy it to the new node and run 'raftvip ha join %s' there\n", args[0], args[0])
			return nil
		}),
	}
	introCmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the introduction is valid (at most 168h)")

	joinCmd := &cobra.Command{
		Use:   "join FILE",
		Short: "Join the node at --endpoint to the cluster named in an introduction file",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("reading the introduction: %w", err)
			}
			intro, err := parseIntroduction(b)
			if err != nil {
				return fmt.Errorf("%s is not an introduction file from 'raftvip ha introduction': %w", args[0], err)
			}
			var st consensus.NodeStatus
			if _, err := c.Do(ctx, "POST", route.HAJoin, api.JoinRequest(intro), &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s joined cluster %s; it is %s\n", st.ID, st.ClusterID, st.Role)
			return nil
		}),
	}

	removeCmd := &cobra.Command{
		Use:   "remove ID|CONSENSUS-ADDR",
		Short: "Remove a passive node from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			if _, err := c.Do(ctx, "DELETE", route.Member(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		}),
	}

	transferCmd := &cobra.Command{
		Use:   "transfer [NODE]",
		Short: "Hand the active role to NODE, or to the most caught-up passive node",
		Args:  cobra.MaximumNArgs(1),
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			req := api.TransferRequest{}
			if len(args) == 1 {
				req.To = args[0]
			}
			var out struct{ From, To string }
			if _, err := c.Do(ctx, "POST", route.HATransfer, req, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "leadership handed from %s to %s\n", out.From, out.To)
			return nil
		}),
	}

	rotateCmd := &cobra.Command{
		Use:   "rotate-certs",
		Short: "Give every member new member and API certificates now",
		Long: `Give every member a new key with a new member certificate (for the consensus
port) and a new API certificate, all signed by the cluster CA. Open
connections keep the certificates they were made with and new connections
use the new ones, so nothing stops. Members also renew each certificate by
themselves once a third of its lifetime is left.`,
		Args: cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, args []string) error {
			var out []consensus.CertInfo
			if _, err := c.Do(ctx, "POST", route.HARotateCerts, nil, &out); err != nil {
				return err
			}
			failed := 0
			for _, ci := range out {
				if ci.Error != "" {
					failed++
					fmt.Fprintf(cmd.OutOrStdout(), "%-12s %-7s NOT ROTATED: %s\n", ci.Node, ci.Kind, ci.Error)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-12s %-7s serial %s, valid until %s\n", ci.Node, ci.Kind, ci.Serial, ci.NotAfter.Format(time.RFC3339))
			}
			if failed > 0 {
				return fmt.Errorf("%d member(s) not rotated; run it again once they are reachable", failed)
			}
			return nil
		}),
	}

	nodeField := func(use, short string, pick func(consensus.NodeStatus) string) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
				var st consensus.NodeStatus
				if _, err := c.Do(ctx, "GET", route.HANode, nil, &st); err != nil {
					return err
				}
				v := pick(st)
				if v == "" {
					return fmt.Errorf("%s has none right now (role %s)", use, st.Role)
				}
				fmt.Fprintln(cmd.OutOrStdout(), v)
				return nil
			}),
		}
	}
	idCmd := nodeField("id", "Print the ID of the node at --endpoint", func(s consensus.NodeStatus) string { return s.ID })
	leaderCmd := nodeField("leader", "Print the ID of the Raft leader as the node at --endpoint sees it", func(s consensus.NodeStatus) string { return s.LeaderID })

	activeCmd := &cobra.Command{
		Use:   "active",
		Short: "Print the ID of the active node",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var cs consensus.ClusterStatus
			if _, err := c.Do(ctx, "GET", route.HAStatus, nil, &cs); err != nil {
				return err
			}
			if cs.ActiveID == "" {
				return fmt.Errorf("no node is active right now: %s", strings.Join(cs.Warnings, "; "))
			}
			fmt.Fprintln(cmd.OutOrStdout(), cs.ActiveID)
			return nil
		}),
	}

	stateCmd := &cobra.Command{
		Use:   "state",
		Short: "Print the ha-state.json of the node at --endpoint",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var st consensus.HAState
			if _, err := c.Do(ctx, "GET", route.HAState, nil, &st); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), st)
		}),
	}

	var peersJSON bool
	peersCmd := &cobra.Command{
		Use:   "peers",
		Short: "List the cluster's members",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var ms []store.Member
			if _, err := c.Do(ctx, "GET", route.HAMembers, nil, &ms); err != nil {
				return err
			}
			if peersJSON {
				return printJSON(cmd.OutOrStdout(), ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCONSENSUS\tAPI\tOBSERVER\tJOINED")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", m.ID, m.ConsensusAddr, m.APIURL, m.Observer, time.Unix(m.Joined, 0).UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		}),
	}
	peersCmd.Flags().BoolVar(&peersJSON, "json", false, "print JSON")

	dumpCmd := &cobra.Command{
		Use:   "dump",
		Short: "Print the whole cluster state as JSON (status, members, this node's ha-state)",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var out struct {
				Status  *consensus.ClusterStatus `json:"status"`
				Members []store.Member           `json:"members"`
				State   *consensus.HAState       `json:"ha_state"`
			}
			if _, err := c.Do(ctx, "GET", route.HAStatus, nil, &out.Status); err != nil {
				return err
			}
			if _, err := c.Do(ctx, "GET", route.HAMembers, nil, &out.Members); err != nil {
				return err
			}
			if _, err := c.Do(ctx, "GET", route.HAState, nil, &out.State); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		}),
	}

	var wait time.Duration
	safeCmd := &cobra.Command{
		Use:   "failover-safe",
		Short: "Say whether a passive node is caught up and could take over (exit 0 if so, 1 if not)",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			if wait < 0 || wait > 5*time.Second {
				return fmt.Errorf("--wait %v must be between 0 and 5s", wait)
			}
			var out struct {
				Safe   bool   `json:"safe"`
				Reason string `json:"reason"`
			}
			if _, err := c.Do(ctx, "GET", route.HAFailoverSafe+"?wait="+wait.String(), nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%v\t%s\n", out.Safe, out.Reason)
			if !out.Safe {
				return exitError{code: 1}
			}
			return nil
		}),
	}
	safeCmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long (at most 5s) for a passive node to catch up")

	var statusJSON bool
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Show every member's role, term, last contact, indexes and lag, with warnings",
		Args:  cobra.NoArgs,
		RunE: clientRun(o, func(ctx context.Context, c *client, cmd *cobra.Command, _ []string) error {
			var cs consensus.ClusterStatus
			if _, err := c.Do(ctx, "GET", route.HAStatus, nil, &cs); err != nil {
				return err
			}
			if statusJSON {
				return printJSON(cmd.OutOrStdout(), cs)
			}
			printStatus(cmd.OutOrStdout(), &cs)
			return nil
		}),
	}
	statusCmd.Flags().BoolVar(&statusJSON, "json", false, "print JSON, for scripts")

	enrollCmd.Flags().StringVar(&secretFile, "secret-file", "", "file holding the new node's bootstrap secret (its data dir's bootstrap-secret)")
	ha.AddCommand(initCmd, tokenCmd, enrollCmd, introCmd, joinCmd, removeCmd, transferCmd, idCmd, stateCmd,
		leaderCmd, activeCmd, peersCmd, dumpCmd, safeCmd, statusCmd, rotateCmd)
	return ha
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be the new node's API URL, such as https://198.18.0.2:8092", s)
	}
	return nil
}

// fileLag says how many files' contents a node lacks, their size and how
// far their fetch has come: "0", or "3 (2.0 GiB, 41% fetched)".
func fileLag(s *consensus.NodeStatus) string {
	if s.FilesMissing == 0 {
		return "0"
	}
	pct := 0.0
	if s.FilesMissingBytes > 0 {
		pct = 100 * float64(s.FilesFetchedBytes) / float64(s.FilesMissingBytes)
	}
	return fmt.Sprintf("%d (%s, %.0f%% fetched)", s.FilesMissing, human(s.FilesMissingBytes), pct)
}

// fenceWord says what a node's kernel fence lets in: "off" (none), "closed"
// (VIP traffic dropped), "open 231ms" (the lease the kernel holds), or
// "FAULT" when the last update failed.
func fenceWord(f *consensus.FenceStatus) string {
	switch {
	case f == nil:
		return "off"
	case f.Error != "":
		return "FAULT"
	case f.Held:
		return fmt.Sprintf("open %dms", f.LeftMs)
	default:
		return "closed"
	}
}

// printStatus writes the cluster status as a table and its warnings in
// plain words.
func printStatus(w io.Writer, cs *consensus.ClusterStatus) {
	fmt.Fprintf(w, "cluster %s, term %d, %d voters (quorum %d), seen from %s\n", cs.ClusterID, cs.Term, cs.Voters, cs.Quorum, cs.Self)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tTERM\tLAST CONTACT\tCOMMIT\tAPPLIED\tLAG\tFILES LAG\tFENCE\tCONSENSUS\tSTATE HASH")
	for _, m := range cs.Members {
		if m.Status == nil {
			fmt.Fprintf(tw, "%s\tunreachable\t-\t-\t-\t-\t-\t-\t-\t%s\t-\n", m.ID, m.ConsensusAddr)
			continue
		}
		s := m.Status
		contact := "-"
		switch {
		case s.State == "Leader":
			contact = "leader"
		case s.LastContactMs >= 0:
			contact = (time.Duration(s.LastContactMs) * time.Millisecond).String()
		}
		hash := m.HashAtCheck
		if len(hash) > 12 {
			hash = hash[:12]
		}
		if hash == "" {
			hash = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", m.ID, s.Role, s.Term, contact, s.CommitIndex, s.AppliedIndex, m.Lag, fileLag(s), fenceWord(s.Fence), m.ConsensusAddr, hash)
	}
	_ = tw.Flush()
	for _, m := range cs.Members {
		if m.Status == nil {
			continue
		}
		ann, ok := m.Status.Announcer.(map[string]any)
		if !ok {
			continue
		}
		line := fmt.Sprintf("%s BGP (AS %v, router ID %v): %v", m.ID, ann["asn"], ann["router_id"], ann["announces"])
		if t, ok := ann["term"].(float64); ok && t > 0 {
			line += fmt.Sprintf(" in term %.0f", t)
		}
		if peers, ok := ann["peers"].([]any); ok {
			var ps []string
			for _, p := range peers {
				if pm, ok := p.(map[string]any); ok {
					p := fmt.Sprintf("%v %v", pm["address"], pm["state"])
					if n, ok := pm["received"].(float64); ok && n > 0 {
						p += fmt.Sprintf(" (sent us %.0f paths)", n)
					}
					ps = append(ps, p)
				}
			}
			line += "; peers: " + strings.Join(ps, ", ")
		}
		if n, ok := ann["rib_paths"].(float64); ok {
			line += fmt.Sprintf("; RIB: %.0f paths (its own; nothing is imported)", n)
		}
		fmt.Fprintln(w, line)
	}
	for _, m := range cs.Members {
		if m.Status != nil && m.Status.Fence != nil && m.Status.Fence.Error != "" {
			fmt.Fprintf(w, "%s kernel fence: %s\n", m.ID, m.Status.Fence.Error)
		}
	}
	if cs.CheckIndex > 0 {
		verdict := "identical on every reachable member"
		if !cs.Consistent {
			verdict = "DIFFERENT between members"
		}
		fmt.Fprintf(w, "state at index %d: %s\n", cs.CheckIndex, verdict)
	}
	if len(cs.Warnings) == 0 {
		fmt.Fprintln(w, "no warnings")
	}
	for _, x := range cs.Warnings {
		fmt.Fprintln(w, "WARNING:", x)
	}
}

// parseIntroduction reads an introduction file: one I-JSON object with a
// join URL (http or https) and a join token, nothing else.
func parseIntroduction(b []byte) (api.Introduction, error) {
	var intro api.Introduction
	if len(b) > 64<<10 {
		return intro, errors.New("larger than 64 KiB")
	}
	if err := store.CheckJSON(b); err != nil {
		return intro, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&intro); err != nil {
		return intro, err
	}
	if err := checkURL(intro.JoinURL); err != nil {
		return intro, err
	}
	if _, err := consensus.ParseToken(intro.Token); err != nil {
		return intro, err
	}
	return intro, nil
}

// Listeners are plain TCP, not MPTCP (Go's default for listeners since 1.24):
// the kernel refuses IP_TTL on an MPTCP socket (EOPNOTSUPP), so GoBGP could
// not set TTL 255 on its listener on port 179 and warned "cannot set TTL
// (255) for TCPListener" at every start; routers that check the TTL (GTSM,
// RFC 5082) would have refused the sessions it accepts.
//
//go:debug multipathtcp=0

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// defaultDataDir is where a node keeps its state unless told otherwise.
const defaultDataDir = "/var/lib/raftvip"

// exitError carries a specific exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "raftvip",
		Short: "Raft-replicated high availability with one virtual IP",
		Long: `raftvip runs a stateful service on three or five identical nodes. Every write is
replicated with Raft, the Raft leader is the single active node, and clients
reach it through one virtual IP or a load balancer.

Run a node with 'raftvip agent', form a cluster with 'raftvip ha init' and
'raftvip ha enroll', and read or write data with 'raftvip objects'.
'raftvip demo' shows a three-node cluster on this machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newHACmd(), newObjectsCmd(), newTokensCmd(), newJobsCmd(), newHAProxyCmd(), newDemoCmd(), newDebugCmd())
	for _, ns := range []string{"files", "isos", "bundles", "plugins"} {
		root.AddCommand(newFilesCmd(ns))
	}
	return root
}

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

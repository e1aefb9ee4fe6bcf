package netns

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/raftvip/raftvip/internal/netlab"
)

// The harness lives in internal/netlab (which the demo uses too); these
// names keep the tests' spelling.
type (
	// Net is a test network (netlab.Net).
	Net = netlab.Net
	// Host is a namespace on it (netlab.Host).
	Host = netlab.Host
	// Proc is a process in a Host (netlab.Proc).
	Proc = netlab.Proc
)

// Prefix starts the name of every namespace the harness makes.
const Prefix = netlab.Prefix

// Partition and Heal cut and restore traffic between two groups of hosts.
var (
	Partition = netlab.Partition
	Heal      = netlab.Heal
)

// Require fails (under CI=true) or skips the test when it cannot build
// namespaces: it needs root and iproute2.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "the ip command (apt-get install -y iproute2)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "netns tests need " + strings.Join(missing, " and ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// New builds the bridge and removes what crashed earlier runs left. The
// network is torn down when the test ends, also when it fails.
func New(t testing.TB) *Net {
	t.Helper()
	Require(t)
	return netlab.Build(t)
}

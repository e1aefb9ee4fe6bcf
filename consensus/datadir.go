package consensus

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockName is the file in the data directory that the agent holding it
// keeps locked (flock) with its PID inside.
const lockName = "agent.lock"

// checkDataDirMode refuses a data directory that users other than its
// owner can enter: it holds the cluster's CA key and tokens. An empty one
// (made by an installer or a test) holds nothing yet and is made 0700.
func checkDataDirMode(dir string, logger *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking the data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--data-dir %s is not a directory", dir)
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) == 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("making the empty data directory %s private: %w", dir, err)
		}
		logger.Info("made the empty data directory private", "dir", dir, "was", fmt.Sprintf("%#o", perm), "now", "0700")
		return nil
	}
	return fmt.Errorf("%w: %s is mode %#o, so other users can reach the CA key and the tokens inside; run chmod 700 %s", ErrDataDirMode, dir, perm, dir)
}

// lockDataDir takes the data directory's lock, or says which agent holds
// it. The lock ends with the process, so a killed agent leaves none.
func lockDataDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, lockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder := "another agent"
		if b, rerr := os.ReadFile(p); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("another agent (pid %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s holds %s", ErrDataDirHeld, holder, dir)
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// BootstrapSecretFile is the file in an unconfigured node's data directory
// that holds its bootstrap secret: the claim on the node. Until the node is
// initialised or has joined a cluster, its API does nothing for a request
// without that secret (Authorization: Bearer), so whoever reaches a fresh
// node first does not own it; the file is removed once the node belongs to
// a cluster.
const BootstrapSecretFile = "bootstrap-secret"

// newSecret is 32 random bytes in hex.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

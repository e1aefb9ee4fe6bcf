package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/raftvip/raftvip/store"
)

// HAStateFile is the name of the per-node state file in the data directory.
const HAStateFile = "ha-state.json"

// HAState is the per-node ha-state.json. Field names follow Digital Rebar
// Provision's so that its users recognise them. Once Valid, the file is
// authoritative over command-line flags.
type HAState struct {
	// ConsensusID is this node's ID (the endpoint ID); it never changes.
	ConsensusID string `json:"ConsensusID"`
	// HaID is the cluster ID, the same on every member.
	HaID string `json:"HaID"`
	// ConsensusAddr is host:port for Raft and member traffic; not the VIP.
	ConsensusAddr string `json:"ConsensusAddr"`
	// ApiUrl is the URL of this node's client API.
	ApiUrl string `json:"ApiUrl"` //nolint:revive // DRP's name
	// VirtInterface is the interface that carries the VIP on this node.
	VirtInterface string `json:"VirtInterface,omitempty"`
	// VirtAddr is the cluster's virtual IP, when raftvip manages one.
	VirtAddr string `json:"VirtAddr,omitempty"`
	// Observer nodes vote and replicate but never become active.
	Observer bool `json:"Observer,omitempty"`
	// Token is the cluster's API bearer token, the same on every member.
	Token string `json:"Token,omitempty"`
	// Valid is set once the node belongs to a cluster.
	Valid bool `json:"Valid"`
}

// ReadHAState reads dir/ha-state.json. A missing file gives a zero HAState
// and no error.
func ReadHAState(dir string) (*HAState, error) {
	b, err := os.ReadFile(filepath.Join(dir, HAStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &HAState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", HAStateFile, err)
	}
	s, err := ParseHAState(b)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, HAStateFile), err)
	}
	return s, nil
}

// ParseHAState reads the contents of an ha-state.json: one I-JSON object of
// known fields; a valid one must name the node, the cluster, the consensus
// address and the API token.
func ParseHAState(b []byte) (*HAState, error) {
	if err := store.CheckJSON(b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s HAState
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if s.Valid && (s.ConsensusID == "" || s.HaID == "" || s.ConsensusAddr == "" || s.Token == "") {
		return nil, errors.New("the state is marked Valid but ConsensusID, HaID, ConsensusAddr or Token is missing")
	}
	for name, v := range map[string]string{"ConsensusID": s.ConsensusID, "HaID": s.HaID, "ConsensusAddr": s.ConsensusAddr, "ApiUrl": s.ApiUrl, "VirtInterface": s.VirtInterface, "VirtAddr": s.VirtAddr, "Token": s.Token} {
		if len(v) > 1024 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("%s is not a plausible value", name)
		}
	}
	return &s, nil
}

// WriteHAState writes dir/ha-state.json atomically: a crash leaves either the
// old file or the new one, never a torn one.
func WriteHAState(dir string, s *HAState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, HAStateFile), append(b, '\n'), 0o600)
}

// writeFileAtomic writes to a temporary file, syncs it, renames it over path
// and syncs the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package consensus

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Filesystem magic numbers (statfs f_type) of network and cluster
// filesystems. Raft's log, the store and their fsyncs assume a local disk
// that this node alone writes; on shared storage two nodes' data can meet
// or a lost lock can corrupt it, as Digital Rebar Provision warns.
var sharedFS = map[int64]string{
	0x6969:     "NFS",
	0x517b:     "SMB",
	0xff534d42: "CIFS",
	0xfe534d42: "SMB2",
	0x00c36400: "CephFS",
	0x01021997: "9P",
	0x5346414f: "AFS",
	0x73757245: "Coda",
	0x7461636f: "OCFS2",
	0x01161970: "GFS2",
	0x47504653: "GPFS",
	0x0bd00bd0: "Lustre",
}

// sharedBlock names the shared or network block device that a
// /sys/dev/block/MAJ:MIN link points at, or "" for a local one.
func sharedBlock(sysPath string) string {
	base := filepath.Base(sysPath)
	switch {
	case strings.Contains(sysPath, "/session"):
		return "iSCSI"
	case strings.HasPrefix(base, "drbd"):
		return "DRBD"
	case strings.HasPrefix(base, "nbd"):
		return "NBD (network block device)"
	case strings.HasPrefix(base, "rbd"):
		return "Ceph RBD"
	}
	return ""
}

// checkLocalStorage refuses a data directory on NFS, SMB, CephFS or a
// cluster filesystem, or on an iSCSI, DRBD, NBD or RBD block device.
func checkLocalStorage(dir string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("checking the data directory's filesystem: %w", err)
	}
	if name, ok := sharedFS[int64(fs.Type)]; ok {
		return fmt.Errorf("%w: %s is on %s; Raft's log and the store need a local disk that only this node writes (move --data-dir)", ErrSharedStorage, dir, name)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("checking the data directory's device: %w", err)
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return nil // not a block device (tmpfs, overlay): local
	}
	if name := sharedBlock(link); name != "" {
		return fmt.Errorf("%w: %s is on a %s device; Raft's log and the store need a local disk that only this node writes (move --data-dir)", ErrSharedStorage, dir, name)
	}
	return nil
}

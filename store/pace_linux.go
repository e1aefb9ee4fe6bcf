package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// pace starts the writeback of the bytes [from, to) of f and waits until the
// bytes before from are on the disk, so that an upload writes at the disk's
// pace and leaves at most two chunks dirty (see paceChunk). Only advice:
// Commit's fsync is what makes the blob durable, so errors are ignored (a
// file system without sync_file_range simply goes unpaced).
func pace(f *os.File, from, to int64) {
	fd := int(f.Fd())
	_ = unix.SyncFileRange(fd, from, to-from, unix.SYNC_FILE_RANGE_WRITE)
	if from > 0 {
		_ = unix.SyncFileRange(fd, 0, from,
			unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
}

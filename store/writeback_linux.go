package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeback asks the kernel to start writing [off, off+n) of f to disk
// without waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE), after
// waiting for [waitOff, waitOff+waitN) to be written, if waitN > 0. It is
// advice: errors are ignored, the final fsync is what makes data durable.
func writeback(f *os.File, off, n, waitOff, waitN int64) {
	fd := int(f.Fd())
	if waitN > 0 {
		_ = unix.SyncFileRange(fd, waitOff, waitN, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
	_ = unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

package commitlog

import (
	"github.com/cockroachdb/pebble/vfs"
	"golang.org/x/sys/unix"
)

// startWriteback has the kernel start writing n bytes of f from off to
// the disk (sync_file_range with SYNC_FILE_RANGE_WRITE alone), without
// waiting for it and without any durability promise, so that the next
// group commit's fdatasync finds them on their way. Files without a
// descriptor (the in-memory ones of tests) are left alone.
func startWriteback(f vfs.File, off, n int64) {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		// A failure costs only the head start: the fdatasync reports
		// what matters.
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}

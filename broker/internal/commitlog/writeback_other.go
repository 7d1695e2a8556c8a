//go:build !linux

package commitlog

import "github.com/cockroachdb/pebble/vfs"

// startWriteback does nothing where there is no sync_file_range; see
// writeback_linux.go.
func startWriteback(vfs.File, int64, int64) {}

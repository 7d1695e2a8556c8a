package commitlog

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/vfs"
)

// FileSpan is a range of whole batches in a segment file that FetchTo
// left in the file, to be sent from it (sendfile(2)) rather than read. It
// holds a descriptor of its own for the file, so the range stays valid
// while the segment is removed by retention, DeleteRecords or compaction,
// or the log is closed: a segment's bytes below its size never change,
// and an unlinked file lives on until its last descriptor is closed.
type FileSpan struct {
	// Pos is where the batches start in the file.
	Pos int64
	// Len is how many bytes of batches the span holds.
	Len int64

	fd   int
	once sync.Once
}

// errNoFd reports a segment file that is not the operating system's.
var errNoFd = errors.New("segment file has no descriptor")

// newFileSpan returns a span of n bytes from pos of f, a file of the
// operating system, holding a duplicate of its descriptor.
func newFileSpan(f vfs.File, pos, n int64) (*FileSpan, error) {
	fd := f.Fd()
	if fd == vfs.InvalidFd {
		return nil, errNoFd
	}
	dup, err := dupFd(int(fd))
	if err != nil {
		return nil, fmt.Errorf("duplicate descriptor: %w", err)
	}
	return &FileSpan{Pos: pos, Len: n, fd: dup}, nil
}

// Fd returns the span's descriptor of its file, valid until Close. Read
// it only with positioned calls (pread(2), sendfile(2) with an offset):
// other spans may share the file position.
func (s *FileSpan) Fd() int { return s.fd }

// Close closes the span's descriptor. It is idempotent.
func (s *FileSpan) Close() error {
	var err error
	s.once.Do(func() { err = closeFd(s.fd) })
	return err
}

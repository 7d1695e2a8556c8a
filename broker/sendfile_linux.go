package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSendfile is the most one sendfile(2) call is asked to send; Linux
// sends at most 0x7ffff000 bytes per call anyway.
const maxSendfile = 1 << 30

// sendfileConn returns the raw connection through which fetch responses
// to nc send record bytes straight from the segment files, or nil when
// nc cannot take them (not TCP: TLS, a pipe, a wrapped connection).
func sendfileConn(nc net.Conn) syscall.RawConn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// sendFile sends n bytes of the file fd from off to the socket of rc
// with sendfile(2) at an explicit offset, so that concurrent sends of one
// file do not share its position. It waits for the socket to drain
// whenever it is full, up to the connection's write deadline.
func sendFile(rc syscall.RawConn, fd int, off, n int64) error {
	var sendErr error
	err := rc.Write(func(s uintptr) bool {
		for n > 0 {
			m, err := unix.Sendfile(int(s), fd, &off, int(min(n, maxSendfile)))
			if m > 0 {
				n -= int64(m)
			}
			switch {
			case errors.Is(err, unix.EAGAIN):
				return false
			case errors.Is(err, unix.EINTR):
			case err != nil:
				sendErr = err
				return true
			case m == 0:
				// The file ends before the span: it was truncated.
				sendErr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	})
	if err == nil {
		err = sendErr
	}
	if err != nil {
		return fmt.Errorf("sendfile %d bytes at byte %d: %w", n, off, err)
	}
	return nil
}

//go:build !linux

package broker

import (
	"errors"
	"net"
	"syscall"
)

// sendfileConn returns nil: fetch responses are sent from memory on
// this platform.
func sendfileConn(net.Conn) syscall.RawConn { return nil }

// sendFile is never called where sendfileConn returns nil.
func sendFile(syscall.RawConn, int, int64, int64) error {
	return errors.New("sendfile is not supported on this platform")
}

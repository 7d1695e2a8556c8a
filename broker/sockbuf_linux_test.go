package broker

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSocketBuffers checks that client connections get the socket buffers
// the options ask for, and the operating system's with -1.
func TestSocketBuffers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       []Opt
		send, recv int // SO_SNDBUF and SO_RCVBUF wanted; 0: not set
	}{
		{"defaults", nil, 2 * 102400, 0},
		{"both set", []Opt{SocketSendBufferBytes(65536), SocketReceiveBufferBytes(32768)}, 2 * 65536, 2 * 32768},
		{"operating system's", []Opt{SocketSendBufferBytes(-1)}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := hostileBroker(t, nil, nil, tc.opts...)
			cl, err := net.Dial("tcp", b.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			// Linux doubles a size set for its bookkeeping; one left to it
			// grows with the traffic (an accepted loopback socket starts
			// at the most net.ipv4.tcp_wmem allows), never to 2*102400.
			send, recv := serverBuffers(t, b)
			if tc.send != 0 && send != tc.send || tc.send == 0 && send == 2*102400 {
				t.Errorf("SO_SNDBUF %d, want %d (0: the system's)", send, tc.send)
			}
			if tc.recv != 0 && recv != tc.recv || tc.recv == 0 && recv == 2*32768 {
				t.Errorf("SO_RCVBUF %d, want %d (0: the system's)", recv, tc.recv)
			}
		})
	}
}

// serverBuffers waits for the broker to serve one connection and returns
// its socket's send and receive buffer sizes.
func serverBuffers(t *testing.T, b *Broker) (send, recv int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		var nc net.Conn
		for _, c := range b.conns {
			nc = c
		}
		b.mu.Unlock()
		if nc != nil {
			raw, err := nc.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var serr, rerr error
			if err := raw.Control(func(fd uintptr) {
				send, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
				recv, rerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
			}); err != nil {
				t.Fatal(err)
			}
			if serr != nil || rerr != nil {
				t.Fatal(serr, rerr)
			}
			return send, recv
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker served no connection within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

package main

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// openPty opens a pseudo-terminal of the given width and returns its
// terminal end.
func openPty(t *testing.T, cols uint16) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: 24}); err != nil {
		t.Fatal(err)
	}
	return pts
}

func TestOutputOnTerminal(t *testing.T) {
	pts := openPty(t, 57)
	t.Setenv("COLUMNS", "")
	os.Unsetenv("COLUMNS")
	t.Setenv("NO_COLOR", "1")
	if o := newOutput(nil, pts, pts); !o.tty || o.width != 57 || o.color {
		t.Errorf("on a 57-column terminal with NO_COLOR: %+v", o)
	}
	os.Unsetenv("NO_COLOR")
	if o := newOutput(nil, pts, pts); !o.tty || !o.color {
		t.Errorf("on a terminal without NO_COLOR: %+v", o)
	}
	t.Setenv("COLUMNS", "132")
	if o := newOutput(nil, pts, pts); o.width != 132 {
		t.Errorf("COLUMNS=132 gives width %d", o.width)
	}
}

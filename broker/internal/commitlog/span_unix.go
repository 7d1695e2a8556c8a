//go:build unix

package commitlog

import "golang.org/x/sys/unix"

// spansSupported says whether FetchTo can return FileSpans here.
const spansSupported = true

func dupFd(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func closeFd(fd int) error { return unix.Close(fd) }

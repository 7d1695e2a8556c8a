//go:build !unix

package commitlog

import "errors"

// spansSupported says whether FetchTo can return FileSpans here.
const spansSupported = false

var errNoSpans = errors.New("file spans are not supported on this platform")

func dupFd(int) (int, error) { return -1, errNoSpans }

func closeFd(int) error { return errNoSpans }

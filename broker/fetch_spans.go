package broker

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kbin"
)

// sendfileMinBytes is how many record bytes of a partition a fetch must
// return for them to be sent from the segment file by sendfile(2): below
// it, one read into memory costs less than the write and the sendfile
// call that the bytes before and after them then take (BenchmarkFetchWrite
// over loopback: 2 to 3 times less up to 2 KiB, 1.5 times at 8 KiB).
const sendfileMinBytes = 16 << 10

// fetchData is what a fetch response points into until it is written:
// the record bytes read into buf, and the spans of segment files left
// there to be sent from them, each standing behind its placeholder
// (spanMark) in the response's record sets, in the order of the
// response's partitions.
type fetchData struct {
	buf   *[]byte
	spans []*commitlog.FileSpan
	// spanBytes is commitlog.FetchOptions.SpanBytes: 0 when the
	// connection cannot send files.
	spanBytes int
}

// reset empties d for another read of the partitions.
func (d *fetchData) reset() error {
	*d.buf = (*d.buf)[:0]
	var errs []error
	for _, s := range d.spans {
		errs = append(errs, s.Close())
	}
	d.spans = d.spans[:0]
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close fetched file spans: %w", err)
	}
	return nil
}

// spanToken starts every placeholder: random, so that no topic name or
// other field of a response holds it but by a chance of 2^-96.
var spanToken = func() (t [12]byte) {
	rand.Read(t[:])
	return t
}()

// spanMarkLen is the length of a placeholder.
const spanMarkLen = len(spanToken) + 4

// spanMark returns the placeholder of the i-th span of a response.
func spanMark(i int) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, spanMarkLen), spanToken[:]...), uint32(i))
}

// appendRecordsLen appends the length prefix of a record set of n bytes
// as a Fetch response of the flexible versions (compact nullable bytes)
// or of the others (nullable bytes) encodes it.
func appendRecordsLen(dst []byte, n int64, flexible bool) []byte {
	if flexible {
		return kbin.AppendUvarint(dst, uint32(n)+1)
	}
	return kbin.AppendInt32(dst, int32(n))
}

// writeSpliced writes frame, a response frame encoded with a placeholder
// for the record set of each of spans, with every placeholder and its
// length prefix replaced by the span's length and its bytes, which go
// from the file to the socket of rc by sendfile(2): the bytes on the wire
// are those of the response encoded with the records in memory. The
// frame's size, its first 4 bytes, is set from the parts.
func writeSpliced(w *bufio.Writer, rc syscall.RawConn, frame []byte, flexible bool, spans []*commitlog.FileSpan) error {
	markPrefix := appendRecordsLen(nil, int64(spanMarkLen), flexible)
	cuts := make([]int, 0, len(spans))
	size, from := int64(len(frame)-4), 4
	var lenBuf [5]byte
	for i, s := range spans {
		mark := spanMark(i)
		j := bytes.Index(frame[from:], mark)
		if j < len(markPrefix) || !bytes.Equal(frame[from+j-len(markPrefix):from+j], markPrefix) {
			return fmt.Errorf("placeholder of file span %d of %d not found in the encoded response", i, len(spans))
		}
		j += from
		cuts = append(cuts, j)
		size += int64(len(appendRecordsLen(lenBuf[:0], s.Len, flexible))-len(markPrefix)-spanMarkLen) + s.Len
		from = j + spanMarkLen
	}
	if size > 1<<31-1 {
		return fmt.Errorf("response of %d bytes is too large to frame", size)
	}
	binary.BigEndian.PutUint32(frame, uint32(size))
	from = 0
	for i, j := range cuts {
		s := spans[i]
		if _, err := w.Write(frame[from : j-len(markPrefix)]); err != nil {
			return err
		}
		if _, err := w.Write(appendRecordsLen(lenBuf[:0], s.Len, flexible)); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := sendFile(rc, s.Fd(), s.Pos, s.Len); err != nil {
			return err
		}
		from = j + spanMarkLen
	}
	_, err := w.Write(frame[from:])
	return err
}

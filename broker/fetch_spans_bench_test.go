//go:build linux

package broker

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkFetchWrite compares writing a one-partition fetch response of
// record sets of several sizes from memory (read into a buffer, copied
// into the encoding) and from the segment file (sendfile), over loopback
// TCP, which is what sendfileMinBytes is chosen from:
//
//	go test -run '^$' -bench BenchmarkFetchWrite ./broker
func BenchmarkFetchWrite(b *testing.B) {
	for _, valueSize := range []int{10, 100, 400, 1600, 6400} { // ~0.9 to 128 KiB of 20-record batches
		l := spanLog(b, filepath.Join(b.TempDir(), "log"), 50, valueSize)
		read, err := l.FetchTo(0, int32(20*(valueSize+10)), nil, commitlog.FetchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n := len(read.Records)
		for _, spans := range []bool{false, true} {
			b.Run(fmt.Sprintf("bytes=%d/sendfile=%v", n, spans), func(b *testing.B) {
				server, client := tcpPair(b)
				go io.Copy(io.Discard, client)
				rc := sendfileConn(server)
				w := bufio.NewWriterSize(server, 64<<10)
				var buf, frame []byte
				b.SetBytes(int64(n))
				for b.Loop() {
					resp := kmsg.NewPtrFetchResponse()
					rt := kmsg.NewFetchResponseTopic()
					rp := kmsg.NewFetchResponseTopicPartition()
					opts := commitlog.FetchOptions{}
					if spans {
						opts.SpanBytes = 1
					}
					f, err := l.FetchTo(0, int32(n), buf[:0], opts)
					if err != nil {
						b.Fatal(err)
					}
					buf = f.Records
					rp.RecordBatches = buf
					if f.Span != nil {
						rp.RecordBatches = spanMark(0)
					}
					rt.Partitions = append(rt.Partitions, rp)
					resp.Topics = append(resp.Topics, rt)
					frame = appendResponse(frame[:0], &reply{hdr: requestHeader{key: kmsg.Fetch.Int16(), version: 16}, resp: resp})
					if f.Span != nil {
						err = writeSpliced(w, rc, frame, true, []*commitlog.FileSpan{f.Span})
						f.Span.Close()
					} else {
						_, err = w.Write(frame)
					}
					if err == nil {
						err = w.Flush()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

//go:build linux

package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// spanLog opens a log in dir holding batches batches of 20 records of
// valueSize bytes each.
func spanLog(t testing.TB, dir string, batches, valueSize int) *commitlog.Log {
	t.Helper()
	l, err := commitlog.Open(dir, commitlog.Config{Sync: commitlog.SyncNone, RetentionBytes: -1, RetentionAge: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	now := time.Now()
	for i := range batches {
		var records []byte
		for j := range 20 {
			r := kmsg.Record{OffsetDelta: int32(j), Value: bytes.Repeat([]byte{byte('a' + (i+j)%26)}, valueSize)}
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			records = r.AppendTo(records)
		}
		batch := kmsg.RecordBatch{
			Magic: 2, LastOffsetDelta: 19, FirstTimestamp: now.UnixMilli(), MaxTimestamp: now.UnixMilli(),
			ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 20, Records: records,
		}
		raw := batch.AppendTo(nil)
		binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
		binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
		if _, err := l.Append(raw, now); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestWriteSplicedMatchesEncoding checks, for every Fetch version the
// broker serves, that a response whose record sets go out of the segment
// files by sendfile puts on the wire exactly the bytes of kmsg's encoding
// of the same response with the records in memory: several topics and
// partitions, record sets sent from files (short and long length
// prefixes, two of one file), read into memory, empty and with an error,
// and aborted transaction lists.
func TestWriteSplicedMatchesEncoding(t *testing.T) {
	dir := t.TempDir()
	logA := spanLog(t, filepath.Join(dir, "a"), 60, 100) // ~130 KiB
	logB := spanLog(t, filepath.Join(dir, "b"), 3, 3)
	server, client := tcpPair(t)
	rc := sendfileConn(server)
	if rc == nil {
		t.Fatal("no raw connection for a TCP connection")
	}
	frames := make(chan []byte)
	go func() {
		defer close(frames)
		for {
			var size [4]byte
			if _, err := io.ReadFull(client, size[:]); err != nil {
				return
			}
			f := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
			copy(f, size[:])
			if _, err := io.ReadFull(client, f[4:]); err != nil {
				return
			}
			frames <- f
		}
	}()

	type part struct {
		log      *commitlog.Log
		offset   int64
		maxBytes int32
		span     bool
		errCode  int16
		aborted  int
	}
	topics := []struct {
		name  string
		parts []part
	}{
		{"first", []part{
			{log: logA, offset: 0, maxBytes: 1 << 20, span: true, aborted: 2},
			{errCode: kerr.NotLeaderForPartition.Code},
			{log: logB, offset: 0, maxBytes: 1 << 20},
			{}, // nothing to return
			{log: logA, offset: 500, maxBytes: 3000, span: true},
		}},
		{"second", []part{{log: logB, offset: 20, maxBytes: 1 << 20, span: true, aborted: 1}}},
		{"third", []part{{errCode: kerr.UnknownTopicOrPartition.Code}}},
	}
	w := bufio.NewWriterSize(server, 64<<10)
	for v := int16(4); v <= 16; v++ {
		plain, spliced := kmsg.NewPtrFetchResponse(), kmsg.NewPtrFetchResponse()
		plain.ThrottleMillis, spliced.ThrottleMillis = 7, 7
		var spans []*commitlog.FileSpan
		for ti, tc := range topics {
			pt, st := kmsg.NewFetchResponseTopic(), kmsg.NewFetchResponseTopic()
			pt.Topic, st.Topic = tc.name, tc.name
			pt.TopicID[0], st.TopicID[0] = byte(ti+1), byte(ti+1)
			for pi, pc := range tc.parts {
				pp := kmsg.NewFetchResponseTopicPartition()
				pp.Partition, pp.ErrorCode = int32(pi), pc.errCode
				pp.HighWatermark, pp.LastStableOffset, pp.LogStartOffset = 1200, 1100, 3
				pp.RecordBatches = noRecords
				for k := range pc.aborted {
					a := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
					a.ProducerID, a.FirstOffset = int64(1000+k), int64(10*k)
					pp.AbortedTransactions = append(pp.AbortedTransactions, a)
				}
				sp := pp
				if pc.log != nil {
					read, err := pc.log.FetchTo(pc.offset, pc.maxBytes, nil, commitlog.FetchOptions{})
					if err != nil || len(read.Records) == 0 {
						t.Fatalf("read: %d bytes, %v", len(read.Records), err)
					}
					pp.RecordBatches, sp.RecordBatches = read.Records, read.Records
					if pc.span {
						f, err := pc.log.FetchTo(pc.offset, pc.maxBytes, nil, commitlog.FetchOptions{SpanBytes: 1})
						if err != nil || f.Span == nil {
							t.Fatalf("span: %+v, %v", f, err)
						}
						defer f.Span.Close()
						sp.RecordBatches = spanMark(len(spans))
						spans = append(spans, f.Span)
					}
				}
				pt.Partitions = append(pt.Partitions, pp)
				st.Partitions = append(st.Partitions, sp)
			}
			plain.Topics = append(plain.Topics, pt)
			spliced.Topics = append(spliced.Topics, st)
		}
		hdr := requestHeader{key: kmsg.Fetch.Int16(), version: v, correlationID: int32(v)}
		want := appendResponse(nil, &reply{hdr: hdr, resp: plain})
		frame := appendResponse(nil, &reply{hdr: hdr, resp: spliced})
		if err := writeSpliced(w, rc, frame, spliced.IsFlexible(), spans); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-frames:
			if !bytes.Equal(got, want) {
				t.Fatalf("v%d: %d bytes on the wire differ from the %d of the plain encoding", v, len(got), len(want))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("v%d: no response on the wire", v)
		}
		if len(want) < 130<<10 {
			t.Fatalf("v%d: a response of only %d bytes", v, len(want))
		}
	}
}

// TestWriteSplicedMissingPlaceholder checks that a response without the
// placeholder of a span is refused rather than sent with a wrong length.
func TestWriteSplicedMissingPlaceholder(t *testing.T) {
	l := spanLog(t, t.TempDir(), 2, 10)
	f, err := l.FetchTo(0, 1<<20, nil, commitlog.FetchOptions{SpanBytes: 1})
	if err != nil || f.Span == nil {
		t.Fatalf("span: %+v, %v", f, err)
	}
	defer f.Span.Close()
	server, _ := tcpPair(t)
	resp := kmsg.NewPtrFetchResponse()
	rt := kmsg.NewFetchResponseTopic()
	rp := kmsg.NewFetchResponseTopicPartition()
	rp.RecordBatches = spanMark(1) // the first span's is 0
	rt.Partitions = append(rt.Partitions, rp)
	resp.Topics = append(resp.Topics, rt)
	frame := appendResponse(nil, &reply{hdr: requestHeader{key: kmsg.Fetch.Int16(), version: 16}, resp: resp})
	err = writeSpliced(bufio.NewWriter(server), sendfileConn(server), frame, true, []*commitlog.FileSpan{f.Span})
	if err == nil {
		t.Fatal("spliced a response without its placeholder")
	}
}

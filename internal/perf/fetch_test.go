package perf

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchResult is what fetchRaw read.
type fetchResult struct {
	records, batches int64
	elapsed          time.Duration
}

// fetchRaw reads every partition of topic from its start to its end with
// Fetch requests (version 12) on a connection of its own, one in flight
// at a time with franz-go's default sizes (50 MiB a response, 1 MiB a
// partition), reading each response into one reused buffer and counting
// the records from the record batches' headers without decoding them:
// what a broker serves when the client costs next to nothing. The
// consumer's figure (Consume) also pays for franz-go's decoding of every
// record and its allocations, in this process.
func fetchRaw(ctx context.Context, addr, topic string) (fetchResult, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fetchResult{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fetchResult{}, fmt.Errorf("start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fetchResult{}, fmt.Errorf("end offsets: %w", err)
	}
	offsets := map[int32]int64{} // the next offset to fetch, of partitions not read to the end
	starts.Each(func(o kadm.ListedOffset) {
		if end, _ := ends.Lookup(topic, o.Partition); o.Offset < end.Offset {
			offsets[o.Partition] = o.Offset
		}
	})
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fetchResult{}, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	formatter := kmsg.NewRequestFormatter(kmsg.FormatterClientID("perf-fetch"))
	var reqBuf, respBuf []byte
	var res fetchResult
	start := time.Now()
	for id := int32(0); len(offsets) > 0; id++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = 500, 1, 50<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		for p, off := range offsets {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, off, 1<<20
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		reqBuf = formatter.AppendRequest(reqBuf[:0], req, id)
		if _, err := conn.Write(reqBuf); err != nil {
			return res, fmt.Errorf("fetch: %w", err)
		}
		var size [4]byte
		if _, err := io.ReadFull(conn, size[:]); err != nil {
			return res, fmt.Errorf("fetch: %w", err)
		}
		respBuf = slices.Grow(respBuf[:0], int(binary.BigEndian.Uint32(size[:])))[:binary.BigEndian.Uint32(size[:])]
		if _, err := io.ReadFull(conn, respBuf); err != nil {
			return res, fmt.Errorf("fetch: %w", err)
		}
		// The response header: the correlation id and, the response being
		// flexible, an empty set of tagged fields.
		if len(respBuf) < 5 || int32(binary.BigEndian.Uint32(respBuf)) != id {
			return res, fmt.Errorf("fetch: response header %x does not answer request %d", respBuf[:min(5, len(respBuf))], id)
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 12
		if err := resp.UnsafeReadFrom(respBuf[5:]); err != nil {
			return res, fmt.Errorf("fetch: decode response: %w", err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return res, fmt.Errorf("fetch: %w", err)
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return res, fmt.Errorf("fetch partition %d: %w", p.Partition, err)
				}
				next, records, batches := scanBatches(p.RecordBatches, offsets[p.Partition])
				res.records, res.batches = res.records+records, res.batches+batches
				offsets[p.Partition] = next
				if end, _ := ends.Lookup(topic, p.Partition); next >= end.Offset {
					delete(offsets, p.Partition)
				}
			}
		}
	}
	res.elapsed = time.Since(start)
	return res, nil
}

// scanBatches walks the whole record batches in b, returning the offset
// after the last of them (from if there is none) and their record and
// batch counts; a batch cut off at the end of b is left for the next
// fetch.
func scanBatches(b []byte, from int64) (next, records, batches int64) {
	next = from
	// A batch: baseOffset int64, batchLength int32 (of what follows it),
	// ... lastOffsetDelta int32 at 23, ... recordCount int32 at 57.
	const headerLen = 61
	for len(b) >= headerLen {
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[8:12])))
		if size < headerLen || size > int64(len(b)) {
			break
		}
		base := int64(binary.BigEndian.Uint64(b[0:8]))
		next = base + int64(int32(binary.BigEndian.Uint32(b[23:27]))) + 1
		records += int64(int32(binary.BigEndian.Uint32(b[57:61])))
		batches++
		b = b[size:]
	}
	return next, records, batches
}

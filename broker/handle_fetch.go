package broker

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleFetch answers a fetch at once if it finds MinBytes or an error,
// and otherwise long-polls: it waits until one of the fetched partitions
// is appended to or MaxWaitMillis passes, and reads again.
//
// Riffle does not keep incremental fetch sessions (KIP-227): it answers
// every fetch in full with session id 0, which clients accept as "no
// session".
//
// A fetch takes the bytes it may read from its connection's budget of
// pending fetch responses before it starts, and gives them back once its
// response is written: a client that pipelines fetches and never reads
// the answers stops being read instead of piling responses up.
func (b *Broker) serveFetch(c *conn, hdr requestHeader, req *kmsg.FetchRequest) *reply {
	n := int64(fetchLimit(b.cfg.fetchMaxBytes, req))
	if err := c.fetches.Acquire(c.ctx, n); err != nil {
		return nil // the connection is closing
	}
	d := &fetchData{buf: c.reads.get(0)}
	if c.raw != nil {
		d.spanBytes = sendfileMinBytes
	}
	rep := c.async(hdr, func(ctx context.Context) kmsg.Response { return b.handleFetch(ctx, req, d) })
	rep.fetch = d
	rep.release = func() {
		if err := d.reset(); err != nil {
			c.log.Warn("release fetch response", "err", err)
		}
		c.reads.put(d.buf)
		c.fetches.Release(n)
	}
	return rep
}

// fetchLimit is how many record bytes a fetch may return, beyond which
// only the first batch goes out whole (KIP-74): the broker's cap or the
// request's MaxBytes, at least 1.
func fetchLimit(brokerMax int32, req *kmsg.FetchRequest) int32 {
	return max(1, min(brokerMax, req.MaxBytes))
}

// handleFetch reads into d, which the response's record sets point into
// until it is written.
func (b *Broker) handleFetch(ctx context.Context, req *kmsg.FetchRequest, d *fetchData) kmsg.Response {
	if req.SessionID != 0 {
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp
	}
	// sent is what the last read put in the response, counted once the
	// response is final.
	var sent []sentBytes
	defer func() {
		for _, s := range sent {
			s.counters.bytesOut.Add(float64(s.n))
		}
	}()
	deadline := time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	var timer *time.Timer
	for {
		resp, size, wake := b.fetchOnce(req, d, &sent)
		wait := time.Until(deadline)
		if size >= int(req.MinBytes) || wake == nil || wait <= 0 {
			return resp
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		cases := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
		}
		for _, ch := range wake {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if i, _, _ := reflect.Select(cases); i < 2 {
			resp, _, _ := b.fetchOnce(req, d, &sent)
			return resp
		}
	}
}

// isolationReadCommitted is the isolation level of read_committed
// consumers in Fetch and ListOffsets.
const isolationReadCommitted = 1

// noRecords is an empty record set. A nil one would be encoded as a null
// (size -1), which librdkafka rejects; Kafka sends size 0.
var noRecords = []byte{}

// sentBytes is how many record bytes of a topic a response carries.
type sentBytes struct {
	counters *topicCounters
	n        int
}

// fetchOnce reads every requested partition once, into d emptied first,
// and lists in *sent the bytes it read of each partition. It returns the
// bytes read and, when nothing failed, the channels that signal new data.
func (b *Broker) fetchOnce(req *kmsg.FetchRequest, d *fetchData, sent *[]sentBytes) (*kmsg.FetchResponse, int, []<-chan struct{}) {
	if err := d.reset(); err != nil {
		b.log.Warn("fetch", "err", err)
	}
	*sent = (*sent)[:0]
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	img := b.meta.Image()
	remaining := int(fetchLimit(b.cfg.fetchMaxBytes, req))
	size, failed := 0, false
	var wake []<-chan struct{}
	for _, t := range req.Topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		name, topicErr := fetchTopic(img, req.Version, t)
		rt.Partitions = make([]kmsg.FetchResponseTopicPartition, len(t.Partitions))
		for i, p := range t.Partitions {
			rp := &rt.Partitions[i]
			*rp = kmsg.NewFetchResponseTopicPartition()
			rp.Partition = p.Partition
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
			rp.RecordBatches = noRecords
			var part *partition
			if topicErr != nil {
				rp.ErrorCode = topicErr.Code
			} else {
				part, rp.ErrorCode = b.lookupPartition(img, name, p.Partition, p.CurrentLeaderEpoch)
			}
			if rp.ErrorCode != 0 {
				failed = true
				continue
			}
			if remaining <= 0 {
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = part.log.HighWatermark(), part.log.LastStableOffset(), part.log.StartOffset()
				continue
			}
			// Taken before the read, so an append after it wakes the wait.
			ch := part.log.Changed()
			start := len(*d.buf)
			maxBytes := min(p.PartitionMaxBytes, int32(min(remaining, 1<<31-1)))
			f, err := part.log.FetchTo(p.FetchOffset, maxBytes, *d.buf, commitlog.FetchOptions{
				Committed: req.IsolationLevel == isolationReadCommitted,
				SpanBytes: d.spanBytes,
			})
			if err != nil {
				rp.ErrorCode = kerr.KafkaStorageError.Code
				if errors.Is(err, commitlog.ErrOffsetOutOfRange) {
					rp.ErrorCode = kerr.OffsetOutOfRange.Code
					rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = f.Bounds.HighWatermark, f.Bounds.LastStableOffset, f.Bounds.StartOffset
				}
				failed = true
				continue
			}
			rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = f.Bounds.HighWatermark, f.Bounds.LastStableOffset, f.Bounds.StartOffset
			for _, a := range f.Aborted {
				at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
				at.ProducerID, at.FirstOffset = a.ProducerID, a.FirstOffset
				rp.AbortedTransactions = append(rp.AbortedTransactions, at)
			}
			*d.buf = f.Records
			n := len(f.Records) - start
			if f.Span != nil {
				rp.RecordBatches = spanMark(len(d.spans))
				d.spans = append(d.spans, f.Span)
				n = int(f.Span.Len)
			} else if n > 0 {
				rp.RecordBatches = f.Records[start:]
			}
			if n > 0 {
				*sent = append(*sent, sentBytes{part.counters, n})
			}
			size += n
			remaining -= n
			wake = append(wake, ch)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if failed {
		wake = nil
	}
	return resp, size, wake
}

// fetchTopic resolves a fetched topic by name, or by id from v13 on.
func fetchTopic(img *metadata.Image, version int16, t kmsg.FetchRequestTopic) (string, *kerr.Error) {
	if version >= 13 {
		mt, ok := img.TopicsByID[t.TopicID]
		if !ok {
			return "", kerr.UnknownTopicID
		}
		return mt.Name, nil
	}
	if _, ok := img.Topics[t.Topic]; !ok {
		return "", kerr.UnknownTopicOrPartition
	}
	return t.Topic, nil
}

// checkLeaderEpoch compares a client's idea of the leader epoch (-1 for
// none) with the partition's (KIP-320).
func checkLeaderEpoch(img *metadata.Image, topic string, partition, epoch int32) int16 {
	if epoch < 0 {
		return 0
	}
	parts := img.Topics[topic].Partitions
	if int(partition) >= len(parts) {
		return kerr.UnknownTopicOrPartition.Code
	}
	cur := parts[partition].LeaderEpoch
	switch {
	case epoch > cur:
		return kerr.UnknownLeaderEpoch.Code
	case epoch < cur:
		return kerr.FencedLeaderEpoch.Code
	}
	return 0
}

package perf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// stampSize is the size of the timestamp an e2e record's value starts with.
const stampSize = 8

// drainTimeout bounds how long e2e waits, after the last record is
// acknowledged, for the consumer to see every acknowledged record.
const drainTimeout = 30 * time.Second

// Produce writes records to the topic, creating it if missing, and reports
// how fast they were acknowledged.
func Produce(ctx context.Context, opts ...Opt) (Result, error) {
	c, err := newConfig(ModeProduce, opts)
	if err != nil {
		return Result{}, fmt.Errorf("produce: %w", err)
	}
	cl, err := kgo.NewClient(c.producerOpts()...)
	if err != nil {
		return Result{}, fmt.Errorf("produce: new client: %w", err)
	}
	defer cl.Close()
	if err := ensureTopic(ctx, kadm.NewClient(cl), c); err != nil {
		return Result{}, fmt.Errorf("produce: %w", err)
	}
	value := payload(c.recordSize)
	var ctr counters
	stop := c.report(ModeProduce, time.Now(), func() (int64, int64, int64) {
		acked := ctr.acked.Load()
		return acked, ctr.bytes.Load(), ctr.sent.Load() - acked - ctr.failed.Load()
	})
	elapsed, err := c.produce(ctx, cl, &ctr, func(time.Time) []byte { return value }, nil)
	stop()
	res := Result{Mode: ModeProduce, Topic: c.topic, Records: ctr.acked.Load(), Bytes: ctr.bytes.Load(), Elapsed: elapsed}
	if err != nil {
		return res, fmt.Errorf("produce: %w", err)
	}
	return res, nil
}

// Consume reads the topic from its start offsets and reports how fast the
// records arrived. The topic must exist. Asked for more records than the
// topic holds, it waits for them until the Duration or ctx ends.
func Consume(ctx context.Context, opts ...Opt) (Result, error) {
	c, err := newConfig(ModeConsume, opts)
	if err != nil {
		return Result{}, fmt.Errorf("consume: %w", err)
	}
	adminCl, err := kgo.NewClient(c.baseOpts()...)
	if err != nil {
		return Result{}, fmt.Errorf("consume: new client: %w", err)
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)
	starts, err := listOffsets(ctx, adm.ListStartOffsets, c.topic, false)
	if err != nil {
		return Result{}, fmt.Errorf("consume: start offsets: %w", err)
	}
	ends, err := listOffsets(ctx, adm.ListEndOffsets, c.topic, false)
	if err != nil {
		return Result{}, fmt.Errorf("consume: end offsets: %w", err)
	}
	target := c.records
	if target == 0 && c.duration == 0 {
		for p, end := range ends[c.topic] {
			target += end.Offset - starts[c.topic][p].Offset
		}
		if target == 0 {
			return Result{Mode: ModeConsume, Topic: c.topic}, nil
		}
	}

	start := time.Now()
	cl, err := kgo.NewClient(append(c.baseOpts(), kgo.ConsumePartitions(starts.KOffsets()))...)
	if err != nil {
		return Result{}, fmt.Errorf("consume: new client: %w", err)
	}
	defer cl.Close()
	var records, bytes atomic.Int64
	stop := c.report(ModeConsume, start, func() (int64, int64, int64) { return records.Load(), bytes.Load(), 0 })
	defer stop()

	runCtx, cancel := c.bounded(ctx)
	defer cancel()
	for target == 0 || records.Load() < target {
		limit := -1
		if target > 0 {
			limit = int(min(target-records.Load(), 1<<20))
		}
		fetches := cl.PollRecords(runCtx, limit)
		if runCtx.Err() != nil {
			break
		}
		if err := fetchErr(fetches); err != nil {
			return Result{}, fmt.Errorf("consume: %w", err)
		}
		var n, b int64
		fetches.EachRecord(func(r *kgo.Record) { n, b = n+1, b+int64(len(r.Value)) })
		records.Add(n)
		bytes.Add(b)
	}
	res := Result{Mode: ModeConsume, Topic: c.topic, Records: records.Load(), Bytes: bytes.Load(), Elapsed: time.Since(start)}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("consume: %w", err)
	}
	return res, nil
}

// EndToEnd produces records stamped with the time each was due (or sent, if
// earlier), consumes them with a second client, and reports the latency
// from that stamp to consumption alongside the consumer's throughput, and
// from that stamp to the producer's acknowledgement (ProduceLatency). With a
// Rate the latency is what an application producing at that rate would see;
// without one it includes the queueing of a saturated producer.
func EndToEnd(ctx context.Context, opts ...Opt) (Result, error) {
	c, err := newConfig(ModeEndToEnd, opts)
	if err != nil {
		return Result{}, fmt.Errorf("e2e: %w", err)
	}
	pcl, err := kgo.NewClient(c.producerOpts()...)
	if err != nil {
		return Result{}, fmt.Errorf("e2e: new producer: %w", err)
	}
	defer pcl.Close()
	adm := kadm.NewClient(pcl)
	if err := ensureTopic(ctx, adm, c); err != nil {
		return Result{}, fmt.Errorf("e2e: %w", err)
	}
	ends, err := listOffsets(ctx, adm.ListEndOffsets, c.topic, true)
	if err != nil {
		return Result{}, fmt.Errorf("e2e: end offsets: %w", err)
	}
	ccl, err := kgo.NewClient(append(c.baseOpts(), kgo.ConsumePartitions(ends.KOffsets()))...)
	if err != nil {
		return Result{}, fmt.Errorf("e2e: new consumer: %w", err)
	}
	defer ccl.Close()

	var (
		ctr              counters
		consumed, cbytes atomic.Int64
		lat              Latencies
		platMu           sync.Mutex // promises may run on several goroutines
		plat             Latencies
		produceDone      = make(chan struct{})
		consumeErr       = make(chan error, 1)
		last             time.Time
	)
	start := time.Now()
	stop := c.report(ModeEndToEnd, start, func() (int64, int64, int64) {
		n := consumed.Load()
		return n, cbytes.Load(), ctr.sent.Load() - n
	})
	defer stop()
	go func() {
		consumeErr <- consumeStamped(ctx, ccl, produceDone, &ctr, &consumed, &cbytes, &lat, &last)
	}()
	padding := payload(c.recordSize)
	_, perr := c.produce(ctx, pcl, &ctr, func(due time.Time) []byte {
		v := make([]byte, len(padding))
		copy(v[stampSize:], padding[stampSize:])
		// A record sent late is stamped with its due time, so the wait
		// counts; one sent early (within the pacer's slack) with the time
		// it was sent, so no latency is negative.
		stamp := min(due.UnixNano(), time.Now().UnixNano())
		binary.BigEndian.PutUint64(v, uint64(stamp))
		return v
	}, func(r *kgo.Record) {
		acked := time.Now()
		platMu.Lock()
		plat.Add(acked.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))))
		platMu.Unlock()
	})
	close(produceDone)
	cerr := <-consumeErr
	res := Result{Mode: ModeEndToEnd, Topic: c.topic, Records: consumed.Load(), Bytes: cbytes.Load()}
	if !last.IsZero() {
		res.Elapsed = last.Sub(start)
	}
	summary := lat.Summary()
	res.Latency = &summary
	platMu.Lock()
	psummary := plat.Summary()
	platMu.Unlock()
	res.ProduceLatency = &psummary
	if err := errors.Join(perr, cerr); err != nil {
		return res, fmt.Errorf("e2e: %w", err)
	}
	return res, nil
}

// consumeStamped consumes until it has seen every record the producer had
// acknowledged when produceDone closed, recording each record's latency.
func consumeStamped(ctx context.Context, cl *kgo.Client, produceDone <-chan struct{}, ctr *counters,
	consumed, bytes *atomic.Int64, lat *Latencies, last *time.Time) error {
	var deadline time.Time
	for {
		select {
		case <-produceDone:
			if consumed.Load() >= ctr.acked.Load() {
				return nil
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(drainTimeout)
			} else if time.Now().After(deadline) {
				return fmt.Errorf("consumed %d of %d acknowledged records within %v of the last acknowledgement",
					consumed.Load(), ctr.acked.Load(), drainTimeout)
			}
		default:
		}
		// A short poll lets the loop notice the producer finishing; records
		// already fetched are kept by the client across polls.
		pollCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fetchErr(fetches); err != nil {
			return err
		}
		now := time.Now()
		var n, b int64
		fetches.EachRecord(func(r *kgo.Record) {
			if len(r.Value) >= stampSize {
				due := time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))
				lat.Add(now.Sub(due))
			}
			n, b = n+1, b+int64(len(r.Value))
		})
		if n > 0 {
			*last = now
			bytes.Add(b)
			consumed.Add(n)
		}
	}
}

// counters track a producer's records; they are updated from kgo's
// promise goroutine and read by progress reports.
type counters struct {
	sent, acked, failed, bytes atomic.Int64
}

// produce sends records until the count or duration bound is reached, then
// flushes, calling onAck, if set, with each acknowledged record, and returns the time from the first record to the last
// acknowledgement. It stops at the first failed record and returns its error.
func (c config) produce(ctx context.Context, cl *kgo.Client, ctr *counters, value func(due time.Time) []byte, onAck func(*kgo.Record)) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			ctr.failed.Add(1)
			cancel(fmt.Errorf("record to %s[%d]: %w", r.Topic, r.Partition, err))
			return
		}
		ctr.acked.Add(1)
		ctr.bytes.Add(int64(len(r.Value)))
		if onAck != nil {
			onAck(r)
		}
	}
	start := time.Now()
	p := newPacer(start, c.rate)
	for i := int64(0); c.records == 0 || i < c.records; i++ {
		if c.duration > 0 && time.Since(start) >= c.duration {
			break
		}
		due, err := p.wait(ctx, i)
		if err != nil {
			break
		}
		ctr.sent.Add(1)
		cl.Produce(ctx, &kgo.Record{Value: value(due)}, promise)
	}
	flushErr := cl.Flush(ctx)
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return elapsed, err
	}
	if flushErr != nil {
		return elapsed, fmt.Errorf("flush: %w", flushErr)
	}
	return elapsed, nil
}

// report calls the progress callback once a second until the returned
// function is called; sample returns records, bytes and records in flight.
func (c config) report(mode Mode, start time.Time, sample func() (records, bytes, inFlight int64)) (stop func()) {
	if c.onProgress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prevRecords, prevBytes int64
		prev := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				records, bytes, inFlight := sample()
				dt := now.Sub(prev)
				c.onProgress(Progress{
					Mode:          mode,
					Elapsed:       now.Sub(start),
					Records:       records,
					Bytes:         bytes,
					RecordsPerSec: perSecond(float64(records-prevRecords), dt),
					MBPerSec:      perSecond(float64(bytes-prevBytes)/(1<<20), dt),
					InFlight:      inFlight,
				})
				prevRecords, prevBytes, prev = records, bytes, now
			}
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}

// bounded returns ctx limited by the run's duration, if it has one.
func (c config) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.duration > 0 {
		return context.WithTimeout(ctx, c.duration)
	}
	return context.WithCancel(ctx)
}

func (c config) baseOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, c.clientOpts...)
}

func (c config) producerOpts() []kgo.Opt {
	cc, _ := Codec(c.compression) // validated by newConfig
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.DefaultProduceTopic(c.topic),
		kgo.ProducerBatchCompression(cc),
		kgo.ProducerLinger(c.linger),
	}
	opts = append(opts, c.acks.ProducerOpts()...)
	return append(opts, c.clientOpts...)
}

// ensureTopic creates the topic with the configured partition count and the
// broker's default replication factor unless it already exists.
func ensureTopic(ctx context.Context, adm *kadm.Client, c config) error {
	_, err := adm.CreateTopic(ctx, c.partitions, -1, nil, c.topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", c.topic, err)
	}
	return nil
}

// listOffsets lists a topic's offsets, retrying while its partitions are
// being elected. A topic the broker does not know is an error at once unless
// justCreated says the topic may still be propagating.
func listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), topic string, justCreated bool) (kadm.ListedOffsets, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		offsets, err := list(ctx, topic)
		if err == nil {
			err = offsets.Error()
		}
		if err == nil && len(offsets[topic]) == 0 {
			return nil, fmt.Errorf("topic %s does not exist", topic)
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) && !justCreated {
			return nil, fmt.Errorf("topic %s does not exist", topic)
		}
		if err == nil || !kerr.IsRetriable(err) {
			return offsets, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic %s: %w (last error: %w)", topic, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fetchErr returns the first error in fetches that is not the poll's own
// context ending.
func fetchErr(fetches kgo.Fetches) error {
	for _, fe := range fetches.Errors() {
		if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
			continue
		}
		return fmt.Errorf("fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
	}
	return nil
}

// payload returns n random bytes, so that compression has realistic work
// rather than a run of zeros.
func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

package topology

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// BufferConfig bounds the buffer of a suppression (Kafka Streams'
// Suppressed.BufferConfig): at most MaxRecords records and MaxBytes bytes of
// serialized keys and values, 0 meaning no bound, and what to do when a
// record would exceed a bound.
type BufferConfig struct {
	maxRecords int64
	maxBytes   int64
	emitEarly  bool
}

// UnboundedBuffer returns a buffer without bounds (Kafka Streams'
// BufferConfig.unbounded). Memory grows with the number of keys buffered.
func UnboundedBuffer() BufferConfig { return BufferConfig{} }

// MaxRecords returns a buffer of at most n records that, when full, emits
// its oldest records early (Kafka Streams' BufferConfig.maxRecords).
func MaxRecords(n int64) BufferConfig { return BufferConfig{maxRecords: n, emitEarly: true} }

// MaxBytes returns a buffer of at most n bytes of keys and values that,
// when full, emits its oldest records early (Kafka Streams'
// BufferConfig.maxBytes).
func MaxBytes(n int64) BufferConfig { return BufferConfig{maxBytes: n, emitEarly: true} }

// WithMaxRecords adds a bound of n records.
func (c BufferConfig) WithMaxRecords(n int64) BufferConfig {
	c.maxRecords = n
	return c
}

// WithMaxBytes adds a bound of n bytes.
func (c BufferConfig) WithMaxBytes(n int64) BufferConfig {
	c.maxBytes = n
	return c
}

// EmitEarlyWhenFull makes a full buffer forward its oldest records before
// their time, so results are no longer final (Kafka Streams'
// emitEarlyWhenFull). It is the default of MaxRecords and MaxBytes.
func (c BufferConfig) EmitEarlyWhenFull() BufferConfig {
	c.emitEarly = true
	return c
}

// FailWhenFull makes a full buffer fail the task with an error instead
// (Kafka Streams' shutDownWhenFull), so that only final results are ever
// emitted.
func (c BufferConfig) FailWhenFull() BufferConfig {
	c.emitEarly = false
	return c
}

func (c BufferConfig) validate() error {
	if c.maxRecords < 0 || c.maxBytes < 0 {
		return fmt.Errorf("suppression buffer: negative bound (%d records, %d bytes)", c.maxRecords, c.maxBytes)
	}
	return nil
}

// SuppressUntilWindowCloses holds back the updates of each window and
// forwards only its final aggregate, once the window closes: when stream
// time reaches the window's end plus the grace period, or for a session or
// sliding window passes it (Kafka Streams'
// suppress(Suppressed.untilWindowCloses(buffer))). The buffer must fail when
// full (FailWhenFull or UnboundedBuffer), as Kafka requires, since emitting
// early would break the promise of final results. A delete (a session
// merged into another) replaces the buffered update of its window and is
// then dropped rather than emitted, as Kafka drops it from final results.
func (t WindowedTable[K, V]) SuppressUntilWindowCloses(buffer BufferConfig, opts ...StreamOpt) WindowedTable[K, V] {
	if buffer.emitEarly {
		t.b.fail(fmt.Errorf("suppress until window closes: the buffer must fail when full, not emit early"))
	}
	// A time window [start, end) closes when stream time reaches end +
	// grace; a session or sliding window, whose end is inclusive, one
	// millisecond later, when its aggregation stops adding records to it.
	closeAfter := int64(0)
	if t.inclusiveEnd {
		closeAfter = 1
	}
	t.Table = suppress(t.Table, t.grace.Milliseconds(), buffer, true, opts,
		func(key any, _ time.Time) int64 { return engine.As[Windowed[K]](key).Window.EndMs() + closeAfter })
	return t
}

// SuppressUntilTimeLimit holds back the updates of each key for limit of
// stream time after the first update it buffered, then forwards the latest
// (Kafka Streams' suppress(Suppressed.untilTimeLimit(limit, buffer))), so a
// busy key emits at most once per limit.
func (t Table[K, V]) SuppressUntilTimeLimit(limit time.Duration, buffer BufferConfig, opts ...StreamOpt) Table[K, V] {
	if limit < 0 {
		t.b.fail(fmt.Errorf("suppress until time limit: negative limit %v", limit))
	}
	return suppress(t, limit.Milliseconds(), buffer, false, opts,
		func(_ any, ts time.Time) int64 { return ts.UnixMilli() })
}

func suppress[K, V any](t Table[K, V], delayMs int64, buffer BufferConfig, dropDeletes bool, opts []StreamOpt,
	bufferTime func(key any, ts time.Time) int64) Table[K, V] {
	b := t.b
	o := collect(opts)
	out := Table[K, V]{b: b, node: o.nodeName(b, "KTABLE-SUPPRESS"), keys: t.keys, values: t.values, get: t.get}
	if err := buffer.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
	}
	storeName := out.node + "-STATE-STORE"
	keys, values := t.keys, t.values
	addNode[K, change[V], K, change[V]](b, out.node, func() stepFunc {
		p := &suppressor[K, V]{storeName: storeName, keys: keys, values: values, delay: delayMs, buffer: buffer,
			dropDeletes: dropDeletes, bufferTime: bufferTime, observed: math.MinInt64}
		return p.process
	}, t.node)
	b.AddStore(state.KeyValueBuilder(storeName, serde.Bytes(), serde.Bytes(), state.InMemory(), state.WithCacheMaxBytes(0)), out.node)
	return out
}

// errBufferFull fails a task whose suppression buffer overflows with
// FailWhenFull.
var errBufferFull = errors.New("suppression buffer is full")

// bufferedRecord is one key's entry in a suppression buffer; a nil value
// is a delete.
type bufferedRecord struct {
	key        []byte
	record     processor.Record[any, any]
	bufferTime int64
	size       int64
}

// bufferHeap orders buffered records by buffer time, then key bytes.
type bufferHeap []*bufferedRecord

func (h bufferHeap) Len() int { return len(h) }
func (h bufferHeap) Less(i, j int) bool {
	if h[i].bufferTime != h[j].bufferTime {
		return h[i].bufferTime < h[j].bufferTime
	}
	return bytes.Compare(h[i].key, h[j].key) < 0
}
func (h bufferHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *bufferHeap) Push(x any)   { *h = append(*h, x.(*bufferedRecord)) }
func (h *bufferHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Layout of a suppression buffer entry in its store: buffer time, record
// timestamp, a null flag and the serialized value.
const bufferedHeader = 8 + 8 + 1

// suppressor buffers the latest update per key and forwards it once stream
// time reaches its buffer time plus the delay. Like Kafka's in-memory
// time-ordered buffer, a key keeps its place (its first buffer time) while
// updates replace its value, and the buffer is written through to a logged
// store so that a restarted task finds it again.
type suppressor[K, V any] struct {
	storeName   string
	keys        serde.Serde[K]
	values      serde.Serde[V]
	delay       int64
	buffer      BufferConfig
	dropDeletes bool
	bufferTime  func(key any, ts time.Time) int64

	store    state.KeyValueStore[[]byte, []byte]
	entries  map[string]*bufferedRecord
	order    bufferHeap
	bytes    int64
	observed int64
}

// load opens the store and rebuilds the buffer from it.
func (p *suppressor[K, V]) load(ctx engine.NodeContext) error {
	var err error
	if p.store, err = processor.Store[state.KeyValueStore[[]byte, []byte]](ctx, p.storeName); err != nil {
		return err
	}
	p.entries = make(map[string]*bufferedRecord)
	for kv, err := range p.store.All() {
		if err != nil {
			return fmt.Errorf("load suppression buffer %s: %w", p.storeName, err)
		}
		if len(kv.Value) < bufferedHeader {
			return fmt.Errorf("load suppression buffer %s: entry of %d bytes", p.storeName, len(kv.Value))
		}
		k, err := p.keys.Deserialize(p.storeName, kv.Key)
		if err != nil {
			return fmt.Errorf("load suppression buffer %s: %w", p.storeName, err)
		}
		var v any
		if kv.Value[16] == 1 {
			if v, err = p.values.Deserialize(p.storeName, kv.Value[bufferedHeader:]); err != nil {
				return fmt.Errorf("load suppression buffer %s: %w", p.storeName, err)
			}
		}
		ts := time.UnixMilli(int64(binary.BigEndian.Uint64(kv.Value[8:]))).UTC()
		e := &bufferedRecord{key: bytes.Clone(kv.Key), bufferTime: int64(binary.BigEndian.Uint64(kv.Value)),
			size: int64(len(kv.Key) + len(kv.Value)), record: processor.Record[any, any]{Key: k, Value: v, Timestamp: ts}}
		p.add(e)
		p.observed = max(p.observed, ts.UnixMilli())
	}
	return nil
}

func (p *suppressor[K, V]) add(e *bufferedRecord) {
	p.entries[string(e.key)] = e
	heap.Push(&p.order, e)
	p.bytes += e.size
}

func (p *suppressor[K, V]) process(ctx engine.NodeContext, r processor.Record[any, any]) error {
	if p.store == nil {
		if err := p.load(ctx); err != nil {
			return err
		}
	}
	p.observed = max(p.observed, r.Timestamp.UnixMilli())
	if err := p.put(r, r.Value.(change[V]).New); err != nil {
		return err
	}
	for len(p.order) > 0 && p.order[0].bufferTime <= p.observed-p.delay {
		if err := p.emitOldest(ctx); err != nil {
			return err
		}
	}
	for p.overCapacity() {
		if !p.buffer.emitEarly {
			return fmt.Errorf("suppress %s: %w (%d records, %d bytes; bounds %d records, %d bytes)",
				p.storeName, errBufferFull, len(p.order), p.bytes, p.buffer.maxRecords, p.buffer.maxBytes)
		}
		if err := p.emitOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// put buffers the new value v of r's key.
func (p *suppressor[K, V]) put(r processor.Record[any, any], v any) error {
	kb, err := p.keys.Serialize(p.storeName, engine.As[K](r.Key))
	if err != nil {
		return fmt.Errorf("suppress: serialize key: %w", err)
	}
	stored := make([]byte, bufferedHeader, bufferedHeader+16)
	if v != nil {
		vb, err := p.values.Serialize(p.storeName, engine.As[V](v))
		if err != nil {
			return fmt.Errorf("suppress: serialize value: %w", err)
		}
		stored[16] = 1
		stored = append(stored, vb...)
	}
	r.Value = v
	size := int64(len(kb) + len(stored))
	e, ok := p.entries[string(kb)]
	if ok {
		p.bytes += size - e.size
		e.record, e.size = r, size
	} else {
		e = &bufferedRecord{key: bytes.Clone(kb), record: r, bufferTime: p.bufferTime(r.Key, r.Timestamp), size: size}
		p.add(e)
	}
	binary.BigEndian.PutUint64(stored, uint64(e.bufferTime))
	binary.BigEndian.PutUint64(stored[8:], uint64(r.Timestamp.UnixMilli()))
	return p.store.Put(e.key, stored)
}

func (p *suppressor[K, V]) overCapacity() bool {
	return p.buffer.maxRecords > 0 && int64(len(p.order)) > p.buffer.maxRecords ||
		p.buffer.maxBytes > 0 && p.bytes > p.buffer.maxBytes
}

func (p *suppressor[K, V]) emitOldest(ctx engine.NodeContext) error {
	e := heap.Pop(&p.order).(*bufferedRecord)
	delete(p.entries, string(e.key))
	p.bytes -= e.size
	if _, _, err := p.store.Delete(e.key); err != nil {
		return err
	}
	r := e.record
	if r.Value == nil && p.dropDeletes {
		return nil
	}
	r.Value = change[V]{New: r.Value}
	return ctx.Forward(r, "")
}

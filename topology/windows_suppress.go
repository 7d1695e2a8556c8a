package topology

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

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
// time reaches the window's end plus the grace period (Kafka Streams'
// suppress(Suppressed.untilWindowCloses(buffer))). The buffer must fail when
// full (FailWhenFull or UnboundedBuffer), as Kafka requires, since emitting
// early would break the promise of final results.
func (t WindowedTable[K, V]) SuppressUntilWindowCloses(buffer BufferConfig, opts ...Option) WindowedTable[K, V] {
	if buffer.emitEarly {
		t.b.fail(fmt.Errorf("suppress until window closes: the buffer must fail when full, not emit early"))
	}
	size, grace := t.windows.size.Milliseconds(), t.windows.grace.Milliseconds()
	t.Table = suppress(t.Table, "KTABLE-SUPPRESS", grace, buffer, opts,
		func(r processor.Record[Windowed[K], V]) int64 {
			return r.Key.Window.StartMs() + size
		})
	return t
}

// SuppressUntilTimeLimit holds back the updates of each key for limit of
// stream time after the first update it buffered, then forwards the latest
// (Kafka Streams' suppress(Suppressed.untilTimeLimit(limit, buffer))), so a
// busy key emits at most once per limit.
func (t Table[K, V]) SuppressUntilTimeLimit(limit time.Duration, buffer BufferConfig, opts ...Option) Table[K, V] {
	if limit < 0 {
		t.b.fail(fmt.Errorf("suppress until time limit: negative limit %v", limit))
	}
	return suppress(t, "KTABLE-SUPPRESS", limit.Milliseconds(), buffer, opts,
		func(r processor.Record[K, V]) int64 { return r.Timestamp.UnixMilli() })
}

func suppress[K, V any](t Table[K, V], prefix string, delayMs int64, buffer BufferConfig, opts []Option,
	bufferTime func(processor.Record[K, V]) int64) Table[K, V] {
	b := t.b
	o := collect(opts)
	out := Table[K, V]{b: b, node: o.nodeName(b, prefix), keys: t.keys, values: t.values}
	if err := buffer.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
	}
	storeName := o.storeName
	if storeName == "" {
		storeName = b.newName(prefix + "-STATE-STORE")
	}
	AddProcessor(b, out.node, func() processor.Processor[K, V, K, V] {
		return &suppressor[K, V]{storeName: storeName, keys: t.keys, values: t.values, delay: delayMs,
			buffer: buffer, bufferTime: bufferTime, observed: math.MinInt64}
	}, t.node)
	b.AddStore(state.KeyValueBuilder(storeName, serde.Bytes(), serde.Bytes(),
		append([]state.Opt{state.InMemory(), state.WithCacheMaxBytes(0)}, o.storeOpts...)...), out.node)
	return out
}

var errBufferFull = errors.New("suppression buffer is full")

// bufferedRecord is one key's entry in a suppression buffer.
type bufferedRecord[K, V any] struct {
	key        []byte
	record     processor.Record[K, V]
	bufferTime int64
	size       int64
	index      int // in the heap
}

// bufferHeap orders buffered records by buffer time, then key bytes.
type bufferHeap[K, V any] []*bufferedRecord[K, V]

func (h bufferHeap[K, V]) Len() int { return len(h) }
func (h bufferHeap[K, V]) Less(i, j int) bool {
	if h[i].bufferTime != h[j].bufferTime {
		return h[i].bufferTime < h[j].bufferTime
	}
	return bytes.Compare(h[i].key, h[j].key) < 0
}
func (h bufferHeap[K, V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *bufferHeap[K, V]) Push(x any) {
	e := x.(*bufferedRecord[K, V])
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *bufferHeap[K, V]) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// suppressor buffers the latest update per key and forwards it once stream
// time reaches its buffer time plus the delay. Like Kafka's in-memory
// time-ordered buffer, a key keeps its place (its first buffer time) while
// updates replace its value, and the buffer is written through to a logged
// store (buffer time, record timestamp, value per key) so that a restarted
// task finds it again.
type suppressor[K, V any] struct {
	storeName  string
	keys       serde.Serde[K]
	values     serde.Serde[V]
	delay      int64
	buffer     BufferConfig
	bufferTime func(processor.Record[K, V]) int64

	ctx      processor.Context[K, V]
	store    state.KeyValueStore[[]byte, []byte]
	entries  map[string]*bufferedRecord[K, V]
	order    bufferHeap[K, V]
	bytes    int64
	observed int64
}

func (p *suppressor[K, V]) Init(ctx processor.Context[K, V]) error {
	p.ctx = ctx
	var err error
	if p.store, err = processor.Store[state.KeyValueStore[[]byte, []byte]](ctx, p.storeName); err != nil {
		return err
	}
	p.entries = make(map[string]*bufferedRecord[K, V])
	for kv, err := range p.store.All() {
		if err != nil {
			return fmt.Errorf("load suppression buffer %s: %w", p.storeName, err)
		}
		if len(kv.Value) < 16 {
			return fmt.Errorf("load suppression buffer %s: entry of %d bytes", p.storeName, len(kv.Value))
		}
		k, err := p.keys.Deserialize(p.storeName, kv.Key)
		if err != nil {
			return fmt.Errorf("load suppression buffer %s: %w", p.storeName, err)
		}
		v, err := p.values.Deserialize(p.storeName, kv.Value[16:])
		if err != nil {
			return fmt.Errorf("load suppression buffer %s: %w", p.storeName, err)
		}
		e := &bufferedRecord[K, V]{key: bytes.Clone(kv.Key), bufferTime: int64(binary.BigEndian.Uint64(kv.Value)),
			size:   int64(len(kv.Key) + len(kv.Value)),
			record: processor.Record[K, V]{Key: k, Value: v, Timestamp: time.UnixMilli(int64(binary.BigEndian.Uint64(kv.Value[8:]))).UTC()}}
		p.add(e)
		p.observed = max(p.observed, e.record.Timestamp.UnixMilli())
	}
	return nil
}

func (p *suppressor[K, V]) add(e *bufferedRecord[K, V]) {
	p.entries[string(e.key)] = e
	heap.Push(&p.order, e)
	p.bytes += e.size
}

func (p *suppressor[K, V]) Process(r processor.Record[K, V]) error {
	p.observed = max(p.observed, r.Timestamp.UnixMilli())
	kb, err := p.keys.Serialize(p.storeName, r.Key)
	if err != nil {
		return fmt.Errorf("suppress: serialize key: %w", err)
	}
	vb, err := p.values.Serialize(p.storeName, r.Value)
	if err != nil {
		return fmt.Errorf("suppress: serialize value: %w", err)
	}
	e, ok := p.entries[string(kb)]
	if ok {
		p.bytes -= e.size
		e.record = r
		e.size = int64(len(kb) + 16 + len(vb))
		p.bytes += e.size
	} else {
		e = &bufferedRecord[K, V]{key: bytes.Clone(kb), record: r, bufferTime: p.bufferTime(r), size: int64(len(kb) + 16 + len(vb))}
		p.add(e)
	}
	stored := binary.BigEndian.AppendUint64(nil, uint64(e.bufferTime))
	stored = binary.BigEndian.AppendUint64(stored, uint64(r.Timestamp.UnixMilli()))
	if err := p.store.Put(e.key, append(stored, vb...)); err != nil {
		return err
	}
	for len(p.order) > 0 && p.order[0].bufferTime <= p.observed-p.delay {
		if err := p.emitOldest(); err != nil {
			return err
		}
	}
	for p.overCapacity() {
		if !p.buffer.emitEarly {
			return fmt.Errorf("suppress %s: %w (%d records, %d bytes; bounds %d records, %d bytes)",
				p.storeName, errBufferFull, len(p.order), p.bytes, p.buffer.maxRecords, p.buffer.maxBytes)
		}
		if err := p.emitOldest(); err != nil {
			return err
		}
	}
	return nil
}

func (p *suppressor[K, V]) overCapacity() bool {
	return p.buffer.maxRecords > 0 && int64(len(p.order)) > p.buffer.maxRecords ||
		p.buffer.maxBytes > 0 && p.bytes > p.buffer.maxBytes
}

func (p *suppressor[K, V]) emitOldest() error {
	e := heap.Pop(&p.order).(*bufferedRecord[K, V])
	delete(p.entries, string(e.key))
	p.bytes -= e.size
	if _, _, err := p.store.Delete(e.key); err != nil {
		return err
	}
	return p.ctx.Forward(e.record)
}

func (p *suppressor[K, V]) Close() error { return nil }

package topology

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// JoinWindows bounds a stream-stream join (Kafka Streams' JoinWindows): a
// left record at time t joins the right records of its key with
// timestamps from t - before to t + after, both inclusive. The grace
// period is how long after a window's end (in stream time) late records
// are still joined; left and outer joins emit a record that found no
// partner only once that has passed.
type JoinWindows struct {
	before, after, grace time.Duration
}

// JoinWindowsOf returns join windows of diff before and after, with no
// grace period (Kafka Streams' JoinWindows.ofTimeDifferenceWithNoGrace).
func JoinWindowsOf(diff time.Duration) JoinWindows { return JoinWindows{before: diff, after: diff} }

// WithGrace returns the windows with a grace period. Default: 0 (Kafka
// Streams' ofTimeDifferenceAndGrace).
func (w JoinWindows) WithGrace(grace time.Duration) JoinWindows {
	w.grace = grace
	return w
}

// Before returns the windows reaching d before a left record's time; d may
// be negative as long as before + after is not (Kafka Streams'
// JoinWindows.before).
func (w JoinWindows) Before(d time.Duration) JoinWindows {
	w.before = d
	return w
}

// After returns the windows reaching d after a left record's time (Kafka
// Streams' JoinWindows.after).
func (w JoinWindows) After(d time.Duration) JoinWindows {
	w.after = d
	return w
}

func (w JoinWindows) validate() error {
	switch {
	case w.before+w.after < 0:
		return fmt.Errorf("join windows: before %v + after %v must not be negative", w.before, w.after)
	case w.grace < 0:
		return fmt.Errorf("join windows: grace %v must not be negative", w.grace)
	}
	return nil
}

// JoinStreams joins two streams on their key within w (Kafka Streams'
// KStream.join(KStream, ValueJoiner, JoinWindows)): every pair of a left
// and a right record of a key whose timestamps are within w gives
// joiner(left, right), stamped with the later of the two timestamps, as
// soon as the second of them arrives. Records with a null key or value are
// dropped. Each side is kept in a window store retaining duplicates for
// before + after + grace; a side whose key may have changed is
// repartitioned first. The results are written with serde.Default[VO]()
// unless WithValueSerde sets one.
func JoinStreams[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], joiner func(left VL, right VR) VO, w JoinWindows, opts ...StreamOpt) Stream[K, VO] {
	return streamJoin[K, VL, VR, VO](l, r, w, false, false, opts, func(lv any, _ bool, rv any, _ bool) any {
		return joiner(engine.As[VL](lv), engine.As[VR](rv))
	})
}

// LeftJoinStreams is JoinStreams that also emits every left record that
// found no right partner, as joiner(left, zero, false), once its window has
// closed: when stream time passes its timestamp + after + grace (Kafka
// Streams' KStream.leftJoin, with the KIP-633 behaviour of emitting no
// spurious results before the window closes). A left record so late that
// its window has already passed is emitted at once.
func LeftJoinStreams[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], joiner func(left VL, right VR, rightFound bool) VO, w JoinWindows, opts ...StreamOpt) Stream[K, VO] {
	return streamJoin[K, VL, VR, VO](l, r, w, true, false, opts, func(lv any, _ bool, rv any, rok bool) any {
		return joiner(engine.As[VL](lv), engine.As[VR](rv), rok)
	})
}

// OuterJoinStreams is LeftJoinStreams for both sides: a right record that
// found no left partner is emitted as joiner(zero, false, right, true) once
// stream time passes its timestamp + before + grace (Kafka Streams'
// KStream.outerJoin).
func OuterJoinStreams[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], joiner func(left VL, leftFound bool, right VR, rightFound bool) VO, w JoinWindows, opts ...StreamOpt) Stream[K, VO] {
	return streamJoin[K, VL, VR, VO](l, r, w, true, true, opts, func(lv any, lok bool, rv any, rok bool) any {
		return joiner(engine.As[VL](lv), lok, engine.As[VR](rv), rok)
	})
}

// joinSide is one input of a stream-stream join.
type joinSide struct {
	left        bool
	store       string // this side's window store
	other       string // the other side's window store
	before      int64  // how far back this side's records look
	after       int64  // how far ahead
	outer       bool   // this side's non-joined records are emitted
	encodeValue func(v any) ([]byte, error)
}

// streamJoin builds the two join processors, one per side, and the node
// merging their output. leftOuter and rightOuter say which sides emit
// records without a partner; joined makes the result of a pair, an absent
// side given as (nil, false).
func streamJoin[K, VL, VR, VO any](l Stream[K, VL], r Stream[K, VR], w JoinWindows, leftOuter, rightOuter bool, opts []StreamOpt,
	joined func(lv any, lok bool, rv any, rok bool) any) Stream[K, VO] {
	b := l.b
	o := collect(opts)
	prefix := "KSTREAM-JOIN"
	switch {
	case rightOuter:
		prefix = "KSTREAM-OUTERJOIN"
	case leftOuter:
		prefix = "KSTREAM-LEFTJOIN"
	}
	name := o.nodeName(b, prefix)
	out := Stream[K, VO]{b: b, node: name, keys: l.keys, values: serde.Default[VO]()}
	if err := w.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", name, err))
		return out
	}
	// A repartitioned side takes the partition count of the other side when
	// that one reads its topic directly, so the two are co-partitioned.
	switch {
	case l.keyChanged && r.keyChanged:
		l = repartition(l, name+"-left-repartition", 0, nil)
		r = repartition(r, name+"-right-repartition", 0, nil)
	case l.keyChanged:
		l = repartition(l, name+"-left-repartition", 0, nil)
		b.readerPartitioned(l.node)
	case r.keyChanged:
		r = repartition(r, name+"-right-repartition", 0, nil)
		b.readerPartitioned(r.node)
	}
	thisNode, otherNode := name+"-this-join", name+"-other-join"
	thisStore, otherStore, outerStore := thisNode+"-store", otherNode+"-store", name+"-outer-shared-join-store"
	spec := state.WindowSpec{Size: max(w.before+w.after, time.Millisecond), RetainDuplicates: true}
	spec.Retention = max(spec.Size, w.before+w.after+w.grace)
	leftBuilder, err := state.WindowBuilder(thisStore, l.keys, l.values, spec)
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", name, err))
		return out
	}
	rightBuilder, err := state.WindowBuilder(otherStore, r.keys, r.values, spec)
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", name, err))
		return out
	}
	before, after, grace := w.before.Milliseconds(), w.after.Milliseconds(), w.grace.Milliseconds()
	left := joinSide{left: true, store: thisStore, other: otherStore, before: before, after: after, outer: leftOuter,
		encodeValue: func(v any) ([]byte, error) { return l.values.Serialize(outerStore, engine.As[VL](v)) }}
	right := joinSide{store: otherStore, other: thisStore, before: after, after: before, outer: rightOuter,
		encodeValue: func(v any) ([]byte, error) { return r.values.Serialize(outerStore, engine.As[VR](v)) }}
	j := &streamJoiner[K, VL, VR]{keys: l.keys, leftValues: l.values, rightValues: r.values, outerStore: outerStore,
		windowBefore: before, windowAfter: after, grace: grace, joined: joined, hasOuter: leftOuter || rightOuter,
		trackers: make(map[processor.TaskID]*joinTimes)}
	b.add(&engine.Node{Name: thisNode, Kind: engine.ProcessorNode, Parents: []string{l.node},
		InKey: typeOf[K](), InValue: typeOf[VL](), OutKey: typeOf[K](), OutValue: typeOf[VO](),
		NewProcessor: func() engine.Runnable { return &joinProcessor[K, VL, VR]{j: j, side: left} }})
	b.add(&engine.Node{Name: otherNode, Kind: engine.ProcessorNode, Parents: []string{r.node},
		InKey: typeOf[K](), InValue: typeOf[VR](), OutKey: typeOf[K](), OutValue: typeOf[VO](),
		NewProcessor: func() engine.Runnable { return &joinProcessor[K, VL, VR]{j: j, side: right} }})
	addStep[K, VO, K, VO](b, name, pass, thisNode, otherNode)
	b.AddStore(leftBuilder, thisNode, otherNode)
	b.AddStore(rightBuilder, thisNode, otherNode)
	if j.hasOuter {
		b.AddStore(state.KeyValueBuilder(outerStore, serde.Bytes(), serde.Bytes()), thisNode, otherNode)
	}
	return out
}

// readerPartitioned gives the internal source node the partition count of
// the other sources of its subtopology.
func (b *Builder) readerPartitioned(source string) {
	if n, ok := b.nodes[source]; ok {
		n.ReaderPartitioned = true
	}
}

// joinTimes is what the two processors of a join share in one task
// (Kafka Streams' TimeTracker): the largest timestamp either has seen,
// and a lower bound of the timestamps in the outer store.
type joinTimes struct {
	streamTime int64
	minTime    int64
	users      int
}

// streamJoiner holds what a join's processors share.
type streamJoiner[K, VL, VR any] struct {
	keys        serde.Serde[K]
	leftValues  serde.Serde[VL]
	rightValues serde.Serde[VR]
	outerStore  string
	// windowBefore and windowAfter are the windows' bounds, as seen from
	// the left side.
	windowBefore, windowAfter int64
	grace                     int64
	joined                    func(lv any, lok bool, rv any, rok bool) any
	hasOuter                  bool

	mu       sync.Mutex
	trackers map[processor.TaskID]*joinTimes
}

func (j *streamJoiner[K, VL, VR]) tracker(id processor.TaskID) *joinTimes {
	j.mu.Lock()
	defer j.mu.Unlock()
	t, ok := j.trackers[id]
	if !ok {
		// minTime 0 makes the first record look at the outer store, which a
		// restarted task may have restored.
		t = &joinTimes{streamTime: math.MinInt64}
		j.trackers[id] = t
	}
	t.users++
	return t
}

func (j *streamJoiner[K, VL, VR]) release(id processor.TaskID) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if t := j.trackers[id]; t != nil {
		if t.users--; t.users == 0 {
			delete(j.trackers, id)
		}
	}
}

// lookBack returns how long after its timestamp a record of a side that
// found no partner waits for one: a left record's window reaches after
// ahead of it, a right record's before.
func (j *streamJoiner[K, VL, VR]) lookBack(left bool) int64 {
	if left {
		return j.windowAfter
	}
	return j.windowBefore
}

// joinProcessor is one side of a stream-stream join.
type joinProcessor[K, VL, VR any] struct {
	j     *streamJoiner[K, VL, VR]
	side  joinSide
	ctx   engine.NodeContext
	times *joinTimes
	outer state.KeyValueStore[[]byte, []byte]
}

func (p *joinProcessor[K, VL, VR]) Init(ctx engine.NodeContext) error {
	p.ctx = ctx
	p.times = p.j.tracker(ctx.TaskID())
	if p.j.hasOuter {
		var err error
		if p.outer, err = processor.Store[state.KeyValueStore[[]byte, []byte]](ctx, p.j.outerStore); err != nil {
			return err
		}
	}
	return nil
}

func (p *joinProcessor[K, VL, VR]) Close() error {
	p.j.release(p.ctx.TaskID())
	return nil
}

// windowStores opens the left and right window stores.
func (p *joinProcessor[K, VL, VR]) windowStores() (state.WindowStore[K, VL], state.WindowStore[K, VR], error) {
	leftName, rightName := p.side.store, p.side.other
	if !p.side.left {
		leftName, rightName = rightName, leftName
	}
	ls, err := processor.Store[state.WindowStore[K, VL]](p.ctx, leftName)
	if err != nil {
		return nil, nil, err
	}
	rs, err := processor.Store[state.WindowStore[K, VR]](p.ctx, rightName)
	return ls, rs, err
}

func (p *joinProcessor[K, VL, VR]) Process(r processor.Record[any, any]) error {
	ts := r.Timestamp.UnixMilli()
	t := p.times
	t.streamTime = max(t.streamTime, ts)
	if isNull(r.Value) || isNull(r.Key) && !p.side.outer {
		recordDropped(p.ctx)
		return nil
	}
	if isNull(r.Key) {
		// An outer side's record without a key cannot join, and is
		// emitted at once, as Kafka does.
		return p.forward(r, r.Timestamp, r.Value, nil, false)
	}
	ls, rs, err := p.windowStores()
	if err != nil {
		return err
	}
	key := engine.As[K](r.Key)
	if p.side.left {
		err = ls.Put(key, engine.As[VL](r.Value), r.Timestamp)
	} else {
		err = rs.Put(key, engine.As[VR](r.Value), r.Timestamp)
	}
	if err != nil {
		return err
	}
	if p.outer != nil && ts == t.streamTime {
		if err := p.emitNonJoined(r); err != nil {
			return err
		}
	}
	from := time.UnixMilli(max(0, ts-p.side.before)).UTC()
	to := time.UnixMilli(max(0, ts+p.side.after)).UTC()
	found := false
	emit := func(otherStart time.Time, other any) error {
		found = true
		if p.outer != nil {
			kb, err := p.j.keys.Serialize(p.j.outerStore, key)
			if err != nil {
				return fmt.Errorf("stream join: serialize key: %w", err)
			}
			if _, _, err := p.outer.Delete(outerKey(otherStart.UnixMilli(), !p.side.left, kb)); err != nil {
				return err
			}
		}
		stamp := r.Timestamp
		if otherStart.After(stamp) {
			stamp = otherStart
		}
		return p.forward(r, stamp, r.Value, other, true)
	}
	if p.side.left {
		for kv, err := range rs.FetchRange(key, from, to) {
			if err != nil {
				return err
			}
			if err := emit(kv.Key.Window.Start, kv.Value); err != nil {
				return err
			}
		}
	} else {
		for kv, err := range ls.FetchRange(key, from, to) {
			if err != nil {
				return err
			}
			if err := emit(kv.Key.Window.Start, kv.Value); err != nil {
				return err
			}
		}
	}
	if found || !p.side.outer {
		return nil
	}
	if p.outer == nil || ts+p.side.after < t.streamTime {
		return p.forward(r, r.Timestamp, r.Value, nil, false)
	}
	t.minTime = min(t.minTime, ts)
	return p.buffer(key, ts, r.Value)
}

// forward emits the join result of this side's value v and the other
// side's value other.
func (p *joinProcessor[K, VL, VR]) forward(r processor.Record[any, any], stamp time.Time, v, other any, otherFound bool) error {
	var res any
	if p.side.left {
		res = p.j.joined(v, true, other, otherFound)
	} else {
		res = p.j.joined(other, otherFound, v, true)
	}
	return p.ctx.Forward(processor.Record[any, any]{Key: r.Key, Value: res, Timestamp: stamp, Headers: r.Headers}, "")
}

// outerKey is Kafka's TimestampedKeyAndJoinSide layout: the timestamp, 1
// for the left side or 0 for the right, the serialized key. The store is
// ordered by time, then side, then key.
func outerKey(ts int64, left bool, kb []byte) []byte {
	out := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(kb)), uint64(ts))
	side := byte(0)
	if left {
		side = 1
	}
	return append(append(out, side), kb...)
}

// buffer adds this side's record, which found no partner yet, to the outer
// store. Records of one key, side and timestamp share an entry: a list of
// 4-byte length-prefixed values.
func (p *joinProcessor[K, VL, VR]) buffer(key K, ts int64, v any) error {
	kb, err := p.j.keys.Serialize(p.j.outerStore, key)
	if err != nil {
		return fmt.Errorf("stream join: serialize key: %w", err)
	}
	vb, err := p.side.encodeValue(v)
	if err != nil {
		return fmt.Errorf("stream join: serialize value: %w", err)
	}
	k := outerKey(ts, p.side.left, kb)
	list, _, err := p.outer.Get(k)
	if err != nil {
		return err
	}
	list = binary.BigEndian.AppendUint32(bytes.Clone(list), uint32(len(vb)))
	return p.outer.Put(k, append(list, vb...))
}

// emitNonJoined emits the buffered records whose window has closed, as
// Kafka's emitNonJoinedOuterRecords does: the store is read in time order
// until an open record of each side is met.
func (p *joinProcessor[K, VL, VR]) emitNonJoined(r processor.Record[any, any]) error {
	t := p.times
	if t.minTime+p.side.after+p.j.grace >= t.streamTime {
		return nil
	}
	t.minTime = math.MaxInt64
	var done [][]byte
	var leftOpen, rightOpen bool
	var emitErr error
	for kv, err := range p.outer.All() {
		if err != nil {
			return err
		}
		if len(kv.Key) < 9 {
			return fmt.Errorf("stream join: outer store key of %d bytes", len(kv.Key))
		}
		ts, left := int64(binary.BigEndian.Uint64(kv.Key)), kv.Key[8] == 1
		t.minTime = ts
		if leftOpen && rightOpen {
			break
		}
		if ts+p.j.lookBack(left)+p.j.grace >= t.streamTime {
			if left {
				leftOpen = true
			} else {
				rightOpen = true
			}
			continue
		}
		if emitErr = p.emitBuffered(r, kv.Key[9:], ts, left, kv.Value); emitErr != nil {
			break
		}
		done = append(done, bytes.Clone(kv.Key))
	}
	if t.minTime == math.MaxInt64 {
		t.minTime = t.streamTime
	}
	for _, k := range done {
		if _, _, err := p.outer.Delete(k); err != nil {
			return err
		}
	}
	return emitErr
}

// emitBuffered emits each value of one outer store entry without a
// partner, stamped with its own timestamp.
func (p *joinProcessor[K, VL, VR]) emitBuffered(r processor.Record[any, any], kb []byte, ts int64, left bool, list []byte) error {
	key, err := p.j.keys.Deserialize(p.j.outerStore, kb)
	if err != nil {
		return fmt.Errorf("stream join: deserialize key: %w", err)
	}
	for len(list) > 0 {
		if len(list) < 4 || int(binary.BigEndian.Uint32(list)) > len(list)-4 {
			return fmt.Errorf("stream join: corrupt outer store entry")
		}
		n := int(binary.BigEndian.Uint32(list))
		vb := list[4 : 4+n]
		list = list[4+n:]
		var res any
		if left {
			v, err := p.j.leftValues.Deserialize(p.j.outerStore, vb)
			if err != nil {
				return fmt.Errorf("stream join: deserialize value: %w", err)
			}
			res = p.j.joined(v, true, nil, false)
		} else {
			v, err := p.j.rightValues.Deserialize(p.j.outerStore, vb)
			if err != nil {
				return fmt.Errorf("stream join: deserialize value: %w", err)
			}
			res = p.j.joined(nil, false, v, true)
		}
		out := processor.Record[any, any]{Key: key, Value: res, Timestamp: time.UnixMilli(ts).UTC(), Headers: r.Headers}
		if err := p.ctx.Forward(out, ""); err != nil {
			return err
		}
	}
	return nil
}

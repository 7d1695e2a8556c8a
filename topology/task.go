package topology

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// InputRecord is a raw record read from a source topic.
type InputRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Timestamp time.Time
	Headers   []processor.Header
}

// OutputRecord is a raw record a task wants written: sink output or a
// dead letter. Partition is -1 when the producer's partitioner should choose.
type OutputRecord struct {
	Topic     string
	Partition int32
	Key       []byte
	Value     []byte
	Timestamp time.Time
	Headers   []processor.Header
}

// TaskConfig is what a runtime supplies to run a Task.
type TaskConfig struct {
	// ApplicationID resolves internal topic names.
	ApplicationID string
	// ID is the task's id; ID.Subtopology selects the part of the topology.
	ID processor.TaskID
	// Stores holds the engine, already wrapped in caching and changelogging
	// layers as configured, for every store of the subtopology.
	Stores map[string]state.RawStore
	// Send receives every record the task writes. It must not call back
	// into the task.
	Send func(OutputRecord)
	// Partitions returns a topic's partition count for sinks with a
	// Partitioner; it may be nil when no sink has one.
	Partitions func(topic string) int32
	// ProcessingErrors handles errors returned or panics raised by
	// processors. Default: processor.FailOnError().
	ProcessingErrors processor.ErrorHandler
	// DeserializationErrors handles records sources cannot deserialize.
	// Default: processor.FailOnError().
	DeserializationErrors processor.ErrorHandler
	// Now reads the wall clock for wall-clock punctuators. Default: time.Now.
	Now func() time.Time
	// Logger receives the task's logs. Default: slog.Default().
	Logger *slog.Logger
}

// Task runs one subtopology for one partition: it deserializes input
// records, pushes them through the processors, fires punctuators and hands
// sink output to the runtime. A Task is not safe for concurrent use.
// Applications do not use Task directly; the streams runtime and the
// streamstest driver do.
type Task struct {
	cfg        TaskConfig
	top        *Topology
	instances  map[string]*instance
	order      []*instance
	sources    map[string]*instance
	patterns   []*instance
	stores     map[string]state.Store
	schedules  []*schedule
	streamTime time.Time
	current    *InputRecord
	commit     bool
	fatal      error
}

type instance struct {
	n        *node
	r        runnable
	t        *Task
	children []*instance
}

type runnable interface {
	init(in *instance) error
	process(r processor.Record[any, any]) error
	close() error
}

type schedule struct {
	owner     *instance
	interval  time.Duration
	typ       processor.PunctuationType
	fn        processor.Punctuator
	next      time.Time
	cancelled bool
}

func (s *schedule) Cancel() { s.cancelled = true }

// fatalError marks an error the handler chose to fail on, so that the
// nodes it propagates through do not handle it again.
type fatalError struct {
	node string
	err  error
}

func (e *fatalError) Error() string { return fmt.Sprintf("node %s: %v", e.node, e.err) }
func (e *fatalError) Unwrap() error { return e.err }

// NewTask creates the processors and stores of subtopology cfg.ID.Subtopology
// and initializes them, children before parents.
func NewTask(top *Topology, cfg TaskConfig) (*Task, error) {
	if cfg.ID.Subtopology < 0 || cfg.ID.Subtopology >= len(top.subs) {
		return nil, fmt.Errorf("task %s: no subtopology %d", cfg.ID, cfg.ID.Subtopology)
	}
	if cfg.ProcessingErrors == nil {
		cfg.ProcessingErrors = processor.FailOnError()
	}
	if cfg.DeserializationErrors == nil {
		cfg.DeserializationErrors = processor.FailOnError()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Task{cfg: cfg, top: top, instances: make(map[string]*instance),
		sources: make(map[string]*instance), stores: make(map[string]state.Store)}
	st := top.subs[cfg.ID.Subtopology]
	for _, name := range st.stores {
		raw, ok := cfg.Stores[name]
		if !ok {
			return nil, fmt.Errorf("task %s: runtime supplied no engine for store %q", cfg.ID, name)
		}
		t.stores[name] = top.stores[name].builder.Build(raw)
	}
	for _, name := range st.nodes {
		n := top.nodes[name]
		in := &instance{n: n, t: t}
		if n.kind == processorNode {
			in.r = n.newProcessor()
		}
		t.instances[name] = in
		t.order = append(t.order, in)
		if n.kind == sourceNode {
			for _, topic := range n.topics {
				t.sources[top.resolve(cfg.ApplicationID, n, topic)] = in
			}
			if n.pattern != nil {
				t.patterns = append(t.patterns, in)
			}
		}
	}
	for _, in := range t.order {
		for _, c := range top.children[in.n.name] {
			in.children = append(in.children, t.instances[c])
		}
	}
	for _, in := range slices.Backward(t.order) {
		if in.r == nil {
			continue
		}
		if err := in.call(func() error { return in.r.init(in) }); err != nil {
			return nil, fmt.Errorf("task %s: init processor %s: %w", cfg.ID, in.n.name, err)
		}
	}
	return t, nil
}

// ID returns the task's id.
func (t *Task) ID() processor.TaskID { return t.cfg.ID }

// Store returns the typed store named name.
func (t *Task) Store(name string) (state.Store, bool) {
	s, ok := t.stores[name]
	return s, ok
}

// StreamTime returns the largest record timestamp the task has processed.
func (t *Task) StreamTime() time.Time { return t.streamTime }

// CommitRequested reports whether a processor called Commit since the last
// call, and clears the request.
func (t *Task) CommitRequested() bool {
	c := t.commit
	t.commit = false
	return c
}

func (t *Task) sourceFor(topic string) *instance {
	if in, ok := t.sources[topic]; ok {
		return in
	}
	for _, in := range t.patterns {
		if in.n.pattern.MatchString(topic) {
			return in
		}
	}
	return nil
}

// Process pushes one input record through the subtopology, then fires the
// stream-time punctuators that are due. It returns an error when an error
// handler chose to fail; the task must then be closed.
func (t *Task) Process(rec InputRecord) error {
	if t.fatal != nil {
		return t.fatal
	}
	src := t.sourceFor(rec.Topic)
	if src == nil {
		return fmt.Errorf("task %s: no source reads topic %q", t.cfg.ID, rec.Topic)
	}
	t.current = &rec
	defer func() { t.current = nil }()
	var k, v any
	err := src.call(func() (err error) {
		k, v, err = src.n.decode(rec.Topic, rec.Key, rec.Value)
		return err
	})
	if err != nil {
		if err := t.handle(src.n.name, t.cfg.DeserializationErrors, err); err != nil {
			return err
		}
		return nil
	}
	if rec.Timestamp.After(t.streamTime) {
		t.streamTime = rec.Timestamp
	}
	r := processor.Record[any, any]{Key: k, Value: v, Timestamp: rec.Timestamp, Headers: rec.Headers}
	if err := src.forward(r, ""); err != nil && t.fatal == nil {
		t.fatal = err
	}
	if t.fatal != nil {
		return t.fatal
	}
	t.current = nil
	return t.punctuate(processor.StreamTime, t.streamTime)
}

// Punctuate fires the wall-clock punctuators due at now.
func (t *Task) Punctuate(now time.Time) error {
	if t.fatal != nil {
		return t.fatal
	}
	return t.punctuate(processor.WallClockTime, now)
}

func (t *Task) punctuate(typ processor.PunctuationType, now time.Time) error {
	t.schedules = slices.DeleteFunc(t.schedules, func(s *schedule) bool { return s.cancelled })
	for _, s := range slices.Clone(t.schedules) {
		if s.typ != typ || s.cancelled {
			continue
		}
		if s.next.IsZero() {
			s.next = now
		}
		if now.Before(s.next) {
			continue
		}
		for !now.Before(s.next) {
			s.next = s.next.Add(s.interval)
		}
		if err := s.owner.call(func() error { return s.fn(now) }); err != nil {
			if err := t.afterError(s.owner, err); err != nil {
				return err
			}
		}
	}
	return t.fatal
}

// Close closes every processor and reports the errors.
func (t *Task) Close() error {
	var errs []error
	for _, in := range t.order {
		if in.r == nil {
			continue
		}
		if err := in.call(in.r.close); err != nil {
			errs = append(errs, fmt.Errorf("close processor %s: %w", in.n.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.ID, err)
	}
	return nil
}

func (t *Task) errorContext(node string) processor.ErrorContext {
	ec := processor.ErrorContext{Node: node, TaskID: t.cfg.ID}
	if c := t.current; c != nil {
		ec.Topic, ec.Partition, ec.Offset = c.Topic, c.Partition, c.Offset
		ec.Timestamp, ec.Key, ec.Value, ec.Headers = c.Timestamp, c.Key, c.Value, c.Headers
	}
	return ec
}

// handle asks h about err and returns nil to continue or a fatal error.
func (t *Task) handle(node string, h processor.ErrorHandler, err error) error {
	resp := h(t.errorContext(node), err)
	for _, dl := range resp.DeadLetters {
		t.cfg.Send(OutputRecord{Topic: dl.Topic, Partition: -1, Key: dl.Key, Value: dl.Value,
			Timestamp: t.errorContext(node).Timestamp, Headers: dl.Headers})
	}
	if resp.Action == processor.Continue {
		return nil
	}
	f := &fatalError{node: node, err: err}
	if t.fatal == nil {
		t.fatal = f
	}
	return f
}

func (t *Task) afterError(in *instance, err error) error {
	if f, ok := errors.AsType[*fatalError](err); ok {
		return f
	}
	return t.handle(in.n.name, t.cfg.ProcessingErrors, err)
}

// call runs fn, converting a panic into a *processor.PanicError.
func (in *instance) call(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &processor.PanicError{Node: in.n.name, Value: v}
		}
	}()
	return fn()
}

// deliver hands r to in and applies the processing error handler.
func (in *instance) deliver(r processor.Record[any, any]) error {
	var err error
	if in.n.kind == sinkNode {
		err = in.call(func() error { return in.sink(r) })
	} else {
		err = in.call(func() error { return in.r.process(r) })
	}
	if err == nil {
		return nil
	}
	return in.t.afterError(in, err)
}

func (in *instance) sink(r processor.Record[any, any]) error {
	t := in.t
	topic := in.n.topic
	if in.n.topicFor != nil {
		topic = in.n.topicFor(r)
	} else {
		topic = t.top.resolve(t.cfg.ApplicationID, in.n, topic)
	}
	k, v, err := in.n.encode(topic, r)
	if err != nil {
		return err
	}
	partition := int32(-1)
	if in.n.partitioner != nil && t.cfg.Partitions != nil {
		partition = in.n.partitioner(topic, k, v, t.cfg.Partitions(topic))
	}
	t.cfg.Send(OutputRecord{Topic: topic, Partition: partition, Key: k, Value: v, Timestamp: r.Timestamp, Headers: r.Headers})
	return nil
}

func (in *instance) forward(r processor.Record[any, any], child string) error {
	if child != "" {
		for _, c := range in.children {
			if c.n.name == child {
				return c.deliver(r)
			}
		}
		return fmt.Errorf("forward from %s: %q is not a child", in.n.name, child)
	}
	for _, c := range in.children {
		if err := c.deliver(r); err != nil {
			return err
		}
	}
	return nil
}

// baseContext implements processor.BaseContext for one node instance.
type baseContext struct{ in *instance }

func (c baseContext) StateStore(name string) (any, error) {
	if !slices.Contains(c.in.n.stores, name) {
		return nil, fmt.Errorf("processor %s, store %q: %w", c.in.n.name, name, processor.ErrStoreNotFound)
	}
	return c.in.t.stores[name], nil
}

func (c baseContext) ApplicationID() string    { return c.in.t.cfg.ApplicationID }
func (c baseContext) TaskID() processor.TaskID { return c.in.t.cfg.ID }
func (c baseContext) StreamTime() time.Time    { return c.in.t.streamTime }
func (c baseContext) Commit()                  { c.in.t.commit = true }
func (c baseContext) RecordMetadata() (processor.RecordMetadata, bool) {
	cur := c.in.t.current
	if cur == nil {
		return processor.RecordMetadata{}, false
	}
	return processor.RecordMetadata{Topic: cur.Topic, Partition: cur.Partition, Offset: cur.Offset}, true
}

func (c baseContext) Schedule(interval time.Duration, typ processor.PunctuationType, fn processor.Punctuator) processor.Cancellable {
	s := &schedule{owner: c.in, interval: interval, typ: typ, fn: fn}
	if typ == processor.WallClockTime {
		s.next = c.in.t.cfg.Now().Add(interval)
	} else if !c.in.t.streamTime.IsZero() {
		s.next = c.in.t.streamTime.Add(interval)
	}
	c.in.t.schedules = append(c.in.t.schedules, s)
	return s
}

func erase[K, V any](r processor.Record[K, V]) processor.Record[any, any] {
	return processor.Record[any, any]{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers}
}

func typedRecord[K, V any](r processor.Record[any, any]) processor.Record[K, V] {
	return processor.Record[K, V]{Key: as[K](r.Key), Value: as[V](r.Value), Timestamp: r.Timestamp, Headers: r.Headers}
}

type typedContext[K, V any] struct{ baseContext }

func (c typedContext[K, V]) Forward(r processor.Record[K, V]) error {
	return c.in.forward(erase(r), "")
}

func (c typedContext[K, V]) ForwardTo(child string, r processor.Record[K, V]) error {
	return c.in.forward(erase(r), child)
}

type fixedKeyContext[K, V any] struct{ baseContext }

func eraseFixed[K, V any](r processor.FixedKeyRecord[K, V]) processor.Record[any, any] {
	return processor.Record[any, any]{Key: r.Key(), Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers}
}

func (c fixedKeyContext[K, V]) Forward(r processor.FixedKeyRecord[K, V]) error {
	return c.in.forward(eraseFixed(r), "")
}

func (c fixedKeyContext[K, V]) ForwardTo(child string, r processor.FixedKeyRecord[K, V]) error {
	return c.in.forward(eraseFixed(r), child)
}

type procAdapter[KIn, VIn, KOut, VOut any] struct {
	p processor.Processor[KIn, VIn, KOut, VOut]
}

func (a *procAdapter[KIn, VIn, KOut, VOut]) init(in *instance) error {
	return a.p.Init(typedContext[KOut, VOut]{baseContext{in}})
}

func (a *procAdapter[KIn, VIn, KOut, VOut]) process(r processor.Record[any, any]) error {
	return a.p.Process(typedRecord[KIn, VIn](r))
}

func (a *procAdapter[KIn, VIn, KOut, VOut]) close() error { return a.p.Close() }

type fixedKeyAdapter[K, VIn, VOut any] struct {
	p processor.FixedKeyProcessor[K, VIn, VOut]
}

func (a *fixedKeyAdapter[K, VIn, VOut]) init(in *instance) error {
	return a.p.Init(fixedKeyContext[K, VOut]{baseContext{in}})
}

func (a *fixedKeyAdapter[K, VIn, VOut]) process(r processor.Record[any, any]) error {
	return a.p.Process(processor.NewFixedKeyRecord(as[K](r.Key), as[VIn](r.Value), r.Timestamp, r.Headers))
}

func (a *fixedKeyAdapter[K, VIn, VOut]) close() error { return a.p.Close() }

// Reads reports whether one of the task's sources reads topic.
func (t *Task) Reads(topic string) bool { return t.sourceFor(topic) != nil }

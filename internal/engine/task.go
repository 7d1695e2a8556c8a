package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
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

// OutputRecord is a raw record a task wants written: sink output, a
// changelog record or a dead letter. Partition is -1 when the producer's
// partitioner should choose.
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
	// ID is the task's id; ID.Subtopology selects the part of the graph.
	ID processor.TaskID
	// Engines holds the bottom of every store of the subtopology: the
	// Pebble or memory engine, already restored. The Task wraps each in
	// the changelogging and caching layers its state.Config asks for.
	Engines map[string]state.RawStore
	// Globals holds the global stores, shared by every task and kept
	// current by the runtime.
	Globals map[string]state.Store
	// ChangeLogger returns where the writes to a logged store go: the
	// store's changelog partition.
	ChangeLogger func(store string) state.ChangeLogger
	// Send receives every record the task's sinks and error handlers
	// write. It must not call back into the task.
	Send func(OutputRecord)
	// Partitions returns a topic's current partition count, or -1 if it
	// is unknown, for sinks with a partitioner. It may be nil when no sink
	// has one.
	Partitions func(topic string) int32
	// ProcessingErrors handles errors returned or panics raised by
	// processors. Default: processor.FailOnError().
	ProcessingErrors processor.ErrorHandler
	// DeserializationErrors handles records sources cannot deserialize.
	// Default: processor.FailOnError().
	DeserializationErrors processor.ErrorHandler
	// Now reads the wall clock for wall-clock punctuators and changelog
	// timestamps. Default: time.Now.
	Now func() time.Time
	// Logger receives the task's logs. Default: slog.Default().
	Logger *slog.Logger
	// Dropped, if not nil, is called for every record an operation drops
	// (see DropRecorder).
	Dropped func()
	// NodeCounter, if not nil, is asked once per node of the subtopology
	// for the counter of the records the node receives (a source counts
	// the records it reads). It may return nil for nodes it does not
	// count. The runtime may read the counters concurrently.
	NodeCounter func(node string) *atomic.Int64
	// Punctuated, if not nil, is called for every punctuator that fires.
	Punctuated func()
}

// Task runs one subtopology for one partition: it deserializes input
// records, pushes them through the processors, fires punctuators and hands
// sink output to the runtime. A Task is not safe for concurrent use.
type Task struct {
	cfg        TaskConfig
	g          *Graph
	instances  map[string]*instance
	order      []*instance
	sources    map[string]*instance
	patterns   []*instance
	raw        map[string]state.RawStore // top of each store's stack
	stores     map[string]state.Store
	schedules  []*schedule
	streamTime time.Time
	partTime   map[string]time.Time // input topic -> largest extracted timestamp
	current    InputRecord          // the record Process pushes through, if processing
	processing bool
	commit     bool
	fatal      error
}

type instance struct {
	n        *Node
	r        Runnable
	t        *Task
	children []*instance
	received *atomic.Int64 // nil if not counted
	topic    string        // a sink's resolved Topic
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

// stack puts the layers cfg asks for over a store's engine: changelogging
// to log when cfg.Logging, then a write-back cache of cfg.CacheMaxBytes.
// It is the only place the store stack is assembled.
func stack(cfg state.Config, engine state.RawStore, log state.ChangeLogger) state.RawStore {
	raw := engine
	if cfg.Logging {
		raw = state.NewLoggedStore(raw, log)
	}
	if cfg.CacheMaxBytes > 0 {
		raw = state.NewCachingStore(raw, cfg.CacheMaxBytes)
	}
	return raw
}

// ChangelogTopic returns the topic a store is restored from: its source
// topic, or else its changelog "<applicationID>-<store>-changelog".
func ChangelogTopic(applicationID string, cfg state.Config) string {
	if cfg.SourceTopic != "" {
		return cfg.SourceTopic
	}
	return state.ChangelogTopic(applicationID, cfg.Name)
}

// NewTask creates the stores and processors of subtopology
// cfg.ID.Subtopology of g and initializes the processors, children before
// parents.
func NewTask(g *Graph, cfg TaskConfig) (*Task, error) {
	if cfg.ID.Subtopology < 0 || cfg.ID.Subtopology >= len(g.subs) {
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
	t := &Task{cfg: cfg, g: g, instances: make(map[string]*instance), sources: make(map[string]*instance),
		raw: make(map[string]state.RawStore), stores: make(map[string]state.Store)}
	st := g.subs[cfg.ID.Subtopology]
	for _, name := range st.stores {
		engine, ok := cfg.Engines[name]
		if !ok {
			return nil, fmt.Errorf("task %s: runtime supplied no engine for store %q", cfg.ID, name)
		}
		b := g.Stores[name].Builder
		var log state.ChangeLogger
		if b.Config().Logging {
			log = cfg.ChangeLogger(name)
		}
		t.raw[name] = stack(b.Config(), engine, log)
		t.stores[name] = b.Build(t.raw[name], ChangelogTopic(cfg.ApplicationID, b.Config()))
	}
	for _, name := range st.nodes {
		n := g.Nodes[name]
		in := &instance{n: n, t: t}
		if n.Kind == SinkNode {
			in.topic = n.resolve(cfg.ApplicationID, n.Topic)
		}
		if cfg.NodeCounter != nil {
			in.received = cfg.NodeCounter(n.Name)
		}
		if n.Kind == ProcessorNode {
			in.r = n.NewProcessor()
		}
		t.instances[name] = in
		t.order = append(t.order, in)
		if n.Kind == SourceNode {
			for _, topic := range n.Topics {
				t.sources[n.resolve(cfg.ApplicationID, topic)] = in
			}
			if n.Pattern != nil {
				t.patterns = append(t.patterns, in)
			}
		}
	}
	for _, in := range t.order {
		for _, c := range g.Children[in.n.Name] {
			in.children = append(in.children, t.instances[c])
		}
	}
	for _, in := range slices.Backward(t.order) {
		if in.r == nil {
			continue
		}
		if err := in.call(func() error { return in.r.Init(nodeContext{in}) }); err != nil {
			return nil, fmt.Errorf("task %s: init processor %s: %w", cfg.ID, in.n.Name, err)
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

// Flush pushes every store's cached writes down, so their changelog records
// are sent, and makes the engines durable, as a commit needs.
func (t *Task) Flush() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(t.raw)) {
		if err := t.raw[name].Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush store %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.ID, err)
	}
	return nil
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

// Reads reports whether one of the task's sources reads topic.
func (t *Task) Reads(topic string) bool { return t.sourceFor(topic) != nil }

func (t *Task) sourceFor(topic string) *instance {
	if in, ok := t.sources[topic]; ok {
		return in
	}
	for _, in := range t.patterns {
		if in.n.Pattern.MatchString(topic) {
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
	t.current, t.processing = rec, true
	defer t.endRecord()
	if src.received != nil {
		src.received.Add(1)
	}
	var k, v any
	err := src.call(func() (err error) {
		k, v, err = src.n.Decode(rec.Topic, rec.Key, rec.Value)
		return err
	})
	if err != nil {
		return t.handle(src.n.Name, t.cfg.DeserializationErrors, err)
	}
	r := processor.Record[any, any]{Key: k, Value: v, Timestamp: rec.Timestamp, Headers: rec.Headers}
	if extract := src.n.ExtractTimestamp; extract != nil {
		if ok, err := t.eventTime(src, rec, &r, extract); !ok {
			return err
		}
	}
	if r.Timestamp.After(t.streamTime) {
		t.streamTime = r.Timestamp
	}
	if err := src.forward(r, ""); err != nil && t.fatal == nil {
		t.fatal = err
	}
	if t.fatal != nil {
		return t.fatal
	}
	t.endRecord()
	return t.punctuate(processor.StreamTime, t.streamTime)
}

// endRecord forgets the record Process pushed through, so that neither
// punctuators nor error contexts see it and its bytes are not held.
func (t *Task) endRecord() { t.current, t.processing = InputRecord{}, false }

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
		// Fire once for the whole gap, and schedule the next due time
		// after now directly, however many intervals were skipped.
		s.next = s.next.Add((now.Sub(s.next)/s.interval + 1) * s.interval)
		if t.cfg.Punctuated != nil {
			t.cfg.Punctuated()
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
		if err := in.call(in.r.Close); err != nil {
			errs = append(errs, fmt.Errorf("close processor %s: %w", in.n.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.ID, err)
	}
	return nil
}

func (t *Task) errorContext(node string) processor.ErrorContext {
	ec := processor.ErrorContext{Node: node, TaskID: t.cfg.ID}
	if t.processing {
		c := &t.current
		ec.Topic, ec.Partition, ec.Offset = c.Topic, c.Partition, c.Offset
		ec.Timestamp, ec.Key, ec.Value, ec.Headers = c.Timestamp, c.Key, c.Value, c.Headers
	}
	return ec
}

// handle asks h about err and returns nil to continue or a fatal error.
func (t *Task) handle(node string, h processor.ErrorHandler, err error) error {
	ec := t.errorContext(node)
	resp := h(ec, err)
	for _, dl := range resp.DeadLetters {
		t.cfg.Send(OutputRecord{Topic: dl.Topic, Partition: -1, Key: dl.Key, Value: dl.Value,
			Timestamp: ec.Timestamp, Headers: dl.Headers})
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
	return t.handle(in.n.Name, t.cfg.ProcessingErrors, err)
}

// call runs fn, converting a panic into a *processor.PanicError.
func (in *instance) call(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &processor.PanicError{Node: in.n.Name, Value: v}
		}
	}()
	return fn()
}

// deliver hands r to in and applies the processing error handler.
func (in *instance) deliver(r processor.Record[any, any]) error {
	if in.received != nil {
		in.received.Add(1)
	}
	var err error
	if in.n.Kind == SinkNode {
		err = in.call(func() error { return in.sink(r) })
	} else {
		err = in.call(func() error { return in.r.Process(r) })
	}
	if err == nil {
		return nil
	}
	return in.t.afterError(in, err)
}

func (in *instance) sink(r processor.Record[any, any]) error {
	t := in.t
	var topic string
	if in.n.TopicFor != nil {
		topic = in.n.TopicFor(r)
	} else {
		topic = in.topic
	}
	k, v, err := in.n.Encode(topic, r)
	if err != nil {
		return err
	}
	partition := int32(-1)
	if in.n.Partitioner != nil && t.cfg.Partitions != nil {
		partition = in.n.Partitioner(topic, k, v, t.cfg.Partitions(topic))
	}
	t.cfg.Send(OutputRecord{Topic: topic, Partition: partition, Key: k, Value: v, Timestamp: r.Timestamp, Headers: r.Headers})
	return nil
}

func (in *instance) forward(r processor.Record[any, any], child string) error {
	if child != "" {
		for _, c := range in.children {
			if c.n.Name == child {
				return c.deliver(r)
			}
		}
		return fmt.Errorf("forward from %s: %q is not a child", in.n.Name, child)
	}
	for _, c := range in.children {
		if err := c.deliver(r); err != nil {
			return err
		}
	}
	return nil
}

// nodeContext implements NodeContext for one node instance.
type nodeContext struct{ in *instance }

func (c nodeContext) Forward(r processor.Record[any, any], child string) error {
	return c.in.forward(r, child)
}

func (c nodeContext) StateStore(name string) (any, error) {
	if slices.Contains(c.in.n.Globals, name) {
		if s, ok := c.in.t.cfg.Globals[name]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("processor %s: runtime supplied no global store %q", c.in.n.Name, name)
	}
	if !slices.Contains(c.in.n.Stores, name) {
		return nil, fmt.Errorf("processor %s, store %q: %w", c.in.n.Name, name, processor.ErrStoreNotFound)
	}
	return c.in.t.stores[name], nil
}

func (c nodeContext) ApplicationID() string    { return c.in.t.cfg.ApplicationID }
func (c nodeContext) TaskID() processor.TaskID { return c.in.t.cfg.ID }
func (c nodeContext) StreamTime() time.Time    { return c.in.t.streamTime }
func (c nodeContext) Commit()                  { c.in.t.commit = true }
func (c nodeContext) RecordMetadata() (processor.RecordMetadata, bool) {
	if !c.in.t.processing {
		return processor.RecordMetadata{}, false
	}
	cur := &c.in.t.current
	return processor.RecordMetadata{Topic: cur.Topic, Partition: cur.Partition, Offset: cur.Offset}, true
}

func (c nodeContext) Schedule(interval time.Duration, typ processor.PunctuationType, fn processor.Punctuator) processor.Cancellable {
	if interval <= 0 {
		panic(fmt.Sprintf("processor %s: Schedule with non-positive interval %v", c.in.n.Name, interval))
	}
	s := &schedule{owner: c.in, interval: interval, typ: typ, fn: fn}
	if typ == processor.WallClockTime {
		s.next = c.in.t.cfg.Now().Add(interval)
	} else if !c.in.t.streamTime.IsZero() {
		s.next = c.in.t.streamTime.Add(interval)
	}
	c.in.t.schedules = append(c.in.t.schedules, s)
	return s
}

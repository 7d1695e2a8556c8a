// Package streamstest runs a topology synchronously in memory, with no
// broker, so that topologies can be unit-tested (Kafka Streams'
// TopologyTestDriver). Pipe records into input topics, advance the wall
// clock to fire punctuators, read what sinks wrote to output topics, and
// inspect state stores.
//
// Every topic has one partition. Records written to a topic that the
// topology itself reads, such as a repartition topic, are processed at once,
// before the call that produced them returns. Records piped into the topic
// of a global table update it at once, as the runtime keeps global tables
// current. After each piped record (and
// each wall-clock advance) the driver flushes the stores' caches, as a
// commit would, so changelog topics can be read as output topics too.
package streamstest

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/topology"
)

// Option configures a Driver.
type Option func(*config)

type config struct {
	appID        string
	start        time.Time
	processing   processor.ErrorHandler
	deserialized processor.ErrorHandler
	logger       *slog.Logger
}

// ApplicationID sets the application id used to name internal topics.
// Default: "streamstest" (Kafka Streams' application.id).
func ApplicationID(id string) Option { return func(c *config) { c.appID = id } }

// StartTime sets the initial wall-clock time, also the timestamp Pipe gives
// records. Default: the current time when New is called.
func StartTime(t time.Time) Option { return func(c *config) { c.start = t } }

// ProcessingErrors sets the handler for processor errors and panics.
// Default: processor.FailOnError() (Kafka Streams'
// processing.exception.handler).
func ProcessingErrors(h processor.ErrorHandler) Option { return func(c *config) { c.processing = h } }

// DeserializationErrors sets the handler for records a source cannot
// deserialize. Default: processor.FailOnError() (Kafka Streams'
// deserialization.exception.handler).
func DeserializationErrors(h processor.ErrorHandler) Option {
	return func(c *config) { c.deserialized = h }
}

// Logger sets the logger for the tasks. Default: slog.Default().
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Driver runs a topology in memory. It is not safe for concurrent use.
type Driver struct {
	cfg     config
	tasks   []*engine.Task
	globals map[string]state.RawStore // global topic -> its store's engine
	gstores map[string]state.Store    // global store name -> typed store
	outputs map[string][]engine.OutputRecord
	queue   []engine.InputRecord
	offsets map[string]int64
	now     time.Time
	dropped int64
}

// ErrNoRecord is returned when reading an output topic that holds no more
// records.
var ErrNoRecord = errors.New("no record in output topic")

// New creates one task per subtopology, with in-memory stores, and
// initializes its processors.
func New(top *topology.Topology, opts ...Option) (*Driver, error) {
	cfg := config{appID: "streamstest", start: time.Now(), logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	d := &Driver{cfg: cfg, outputs: make(map[string][]engine.OutputRecord), offsets: make(map[string]int64), now: cfg.start}
	g := engine.Of(top)
	d.globals = make(map[string]state.RawStore)
	globals := make(map[string]state.Store)
	for name, gs := range g.Globals {
		raw := state.NewMemoryStore(name)
		d.globals[gs.Topic] = raw
		globals[name] = gs.Builder.Build(raw, gs.Topic)
	}
	d.gstores = globals
	for _, st := range g.Subtopologies(cfg.appID) {
		engines := make(map[string]state.RawStore)
		for _, sc := range st.Stores {
			engines[sc.Name] = sc.WrapEngine(state.NewMemoryStore(sc.Name))
		}
		task, err := engine.NewTask(g, engine.TaskConfig{
			ApplicationID: cfg.appID,
			ID:            processor.TaskID{Subtopology: st.ID},
			Engines:       engines,
			Globals:       globals,
			ChangeLogger: func(store string) state.ChangeLogger {
				topic := state.ChangelogTopic(cfg.appID, store)
				return state.ChangeLoggerFunc(func(k, v []byte) {
					d.send(engine.OutputRecord{Topic: topic, Partition: 0, Key: k, Value: v, Timestamp: d.now})
				})
			},
			Send:                  d.send,
			Partitions:            func(string) int32 { return 1 },
			ProcessingErrors:      cfg.processing,
			DeserializationErrors: cfg.deserialized,
			Now:                   func() time.Time { return d.now },
			Logger:                cfg.logger,
			Dropped:               func() { d.dropped++ },
		})
		if err != nil {
			return nil, fmt.Errorf("streamstest: %w", err)
		}
		d.tasks = append(d.tasks, task)
	}
	return d, nil
}

func (d *Driver) send(r engine.OutputRecord) {
	d.outputs[r.Topic] = append(d.outputs[r.Topic], r)
	if _, ok := d.globals[r.Topic]; ok || d.taskFor(r.Topic) != nil {
		d.queue = append(d.queue, engine.InputRecord{Topic: r.Topic, Key: r.Key, Value: r.Value,
			Timestamp: r.Timestamp, Headers: r.Headers})
	}
}

func (d *Driver) taskFor(topic string) *engine.Task {
	for _, t := range d.tasks {
		if t.Reads(topic) {
			return t
		}
	}
	return nil
}

// run processes queued records until none are left, then flushes stores.
func (d *Driver) run() error {
	for len(d.queue) > 0 {
		rec := d.queue[0]
		d.queue = d.queue[1:]
		if global, ok := d.globals[rec.Topic]; ok {
			// A global table takes the topic's records as they are.
			var err error
			if rec.Value == nil {
				err = global.Delete(rec.Key)
			} else {
				err = global.Put(rec.Key, rec.Value)
			}
			if err != nil {
				return fmt.Errorf("streamstest: update global store of %s: %w", rec.Topic, err)
			}
			continue
		}
		task := d.taskFor(rec.Topic)
		if task == nil {
			return fmt.Errorf("streamstest: no source reads topic %q", rec.Topic)
		}
		rec.Offset = d.offsets[rec.Topic]
		d.offsets[rec.Topic]++
		if err := task.Process(rec); err != nil {
			d.queue = nil
			return err
		}
	}
	for _, t := range d.tasks {
		if err := t.Flush(); err != nil {
			return fmt.Errorf("streamstest: %w", err)
		}
	}
	if len(d.queue) > 0 {
		return d.run()
	}
	return nil
}

// DroppedRecords returns how many records windowed operations have
// dropped, once per window a record was late for, and once for a record
// with a null key or value or a negative timestamp (Kafka Streams'
// dropped-records metric).
func (d *Driver) DroppedRecords() int64 { return d.dropped }

// Now returns the driver's wall-clock time.
func (d *Driver) Now() time.Time { return d.now }

// AdvanceWallClock moves the wall clock forward by by and fires the
// wall-clock punctuators that are due.
func (d *Driver) AdvanceWallClock(by time.Duration) error {
	d.now = d.now.Add(by)
	for _, t := range d.tasks {
		if err := t.Punctuate(d.now); err != nil {
			return err
		}
	}
	return d.run()
}

// Close closes every task's processors.
func (d *Driver) Close() error {
	var errs []error
	for _, t := range d.tasks {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

// InputTopic pipes typed records into a topic.
type InputTopic[K, V any] struct {
	d      *Driver
	topic  string
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// NewInputTopic returns an InputTopic for topic, serializing with keys and
// values.
func NewInputTopic[K, V any](d *Driver, topic string, keys serde.Serde[K], values serde.Serde[V]) *InputTopic[K, V] {
	return &InputTopic[K, V]{d: d, topic: topic, keys: keys, values: values}
}

// Pipe processes one record timestamped with the driver's wall-clock time.
func (in *InputTopic[K, V]) Pipe(key K, value V) error {
	return in.PipeRecord(processor.Record[K, V]{Key: key, Value: value, Timestamp: in.d.now})
}

// PipeAt processes one record with timestamp ts, which advances stream time
// and may fire stream-time punctuators.
func (in *InputTopic[K, V]) PipeAt(key K, value V, ts time.Time) error {
	return in.PipeRecord(processor.Record[K, V]{Key: key, Value: value, Timestamp: ts})
}

// PipeRecord processes r, including everything it causes downstream.
func (in *InputTopic[K, V]) PipeRecord(r processor.Record[K, V]) error {
	k, err := in.keys.Serialize(in.topic, r.Key)
	if err != nil {
		return fmt.Errorf("streamstest: serialize key: %w", err)
	}
	v, err := in.values.Serialize(in.topic, r.Value)
	if err != nil {
		return fmt.Errorf("streamstest: serialize value: %w", err)
	}
	return in.PipeRaw(k, v, r.Timestamp, r.Headers)
}

// PipeTombstone processes a record with key and a null value, which
// deletes key from a table read from the topic.
func (in *InputTopic[K, V]) PipeTombstone(key K) error {
	k, err := in.keys.Serialize(in.topic, key)
	if err != nil {
		return fmt.Errorf("streamstest: serialize key: %w", err)
	}
	return in.PipeRaw(k, nil, in.d.now, nil)
}

// PipeRaw processes a record given as bytes, for example to test how a
// topology handles data its serdes cannot read.
func (in *InputTopic[K, V]) PipeRaw(key, value []byte, ts time.Time, headers []processor.Header) error {
	in.d.queue = append(in.d.queue, engine.InputRecord{Topic: in.topic, Key: key, Value: value, Timestamp: ts, Headers: headers})
	return in.d.run()
}

// OutputTopic reads, in order, the records written to a topic.
type OutputTopic[K, V any] struct {
	d      *Driver
	topic  string
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// NewOutputTopic returns an OutputTopic for topic, deserializing with keys
// and values. Changelog topics are named state.ChangelogTopic(appID, store).
func NewOutputTopic[K, V any](d *Driver, topic string, keys serde.Serde[K], values serde.Serde[V]) *OutputTopic[K, V] {
	return &OutputTopic[K, V]{d: d, topic: topic, keys: keys, values: values}
}

// Len returns the number of records not yet read.
func (o *OutputTopic[K, V]) Len() int { return len(o.d.outputs[o.topic]) }

// Read returns the next record, or ErrNoRecord.
func (o *OutputTopic[K, V]) Read() (processor.Record[K, V], error) {
	var r processor.Record[K, V]
	q := o.d.outputs[o.topic]
	if len(q) == 0 {
		return r, fmt.Errorf("read %s: %w", o.topic, ErrNoRecord)
	}
	raw := q[0]
	o.d.outputs[o.topic] = q[1:]
	k, err := o.keys.Deserialize(o.topic, raw.Key)
	if err != nil {
		return r, fmt.Errorf("read %s: deserialize key: %w", o.topic, err)
	}
	v, err := o.values.Deserialize(o.topic, raw.Value)
	if err != nil {
		return r, fmt.Errorf("read %s: deserialize value: %w", o.topic, err)
	}
	return processor.Record[K, V]{Key: k, Value: v, Timestamp: raw.Timestamp, Headers: raw.Headers}, nil
}

// ReadAll returns every record not yet read.
func (o *OutputTopic[K, V]) ReadAll() ([]processor.Record[K, V], error) {
	var out []processor.Record[K, V]
	for o.Len() > 0 {
		r, err := o.Read()
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Store returns the state store named name as type S, for example
// streamstest.Store[state.KeyValueStore[string, int64]](d, "counts").
func Store[S any](d *Driver, name string) (S, error) {
	var zero S
	stores := []func(string) (state.Store, bool){func(name string) (state.Store, bool) {
		s, ok := d.gstores[name]
		return s, ok
	}}
	for _, t := range d.tasks {
		stores = append(stores, t.Store)
	}
	for _, get := range stores {
		if s, ok := get(name); ok {
			typed, ok := s.(S)
			if !ok {
				return zero, fmt.Errorf("streamstest: store %q is a %T, not a %T", name, s, zero)
			}
			return typed, nil
		}
	}
	return zero, fmt.Errorf("streamstest: no store named %q", name)
}

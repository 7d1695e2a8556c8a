// Package processor is Riffle's Processor API: the record type that flows
// through a topology, the Processor interfaces users implement, and the
// context through which a processor forwards records, schedules
// punctuators, reads record metadata, requests commits and reaches its state
// stores. It mirrors Kafka Streams' org.apache.kafka.streams.processor.api
// package, which replaced the older Transformer interfaces.
//
// Processors are wired into a graph with the topology package and executed by
// the streams runtime (or the streamstest driver). A processor instance
// belongs to one task and is never called concurrently.
package processor

import (
	"errors"
	"fmt"
	"time"
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a typed record flowing between processors.
type Record[K, V any] struct {
	Key       K
	Value     V
	Timestamp time.Time
	Headers   []Header
}

// Processor consumes records of type Record[KIn, VIn] and may forward records
// of type Record[KOut, VOut] to its children.
//
// Init is called once before the first record, with the context the
// processor keeps for forwarding and scheduling. Process is called for every
// record; an error it returns goes to the configured processing error
// handler. Close is called when the task closes.
type Processor[KIn, VIn, KOut, VOut any] interface {
	Init(ctx Context[KOut, VOut]) error
	Process(r Record[KIn, VIn]) error
	Close() error
}

// FixedKeyRecord is a record whose key a processor can read but not change.
// Only the runtime makes them, from the records it hands a
// FixedKeyProcessor; build the next record with WithValue. Forwarding a
// FixedKeyRecord made any other way (a composite literal has the zero key)
// fails with ErrNotFromInput.
type FixedKeyRecord[K, V any] struct {
	key       K
	fromInput bool
	Value     V
	Timestamp time.Time
	Headers   []Header
}

// Key returns the record's key.
func (r FixedKeyRecord[K, V]) Key() K { return r.key }

// WithValue returns a record with r's key, timestamp and headers and the
// value v.
func WithValue[K, V, VR any](r FixedKeyRecord[K, V], v VR) FixedKeyRecord[K, VR] {
	return FixedKeyRecord[K, VR]{key: r.key, fromInput: r.fromInput, Value: v, Timestamp: r.Timestamp, Headers: r.Headers}
}

// ErrNotFromInput is returned (wrapped) when a fixed-key processor forwards
// a FixedKeyRecord that does not derive from a record it was given.
var ErrNotFromInput = errors.New("FixedKeyRecord does not derive from an input record")

// ProcessorOf returns p as a Processor: it hands p each record as a
// FixedKeyRecord and forwards what p forwards with the key it carries. The
// topology package runs fixed-key processors through it.
func ProcessorOf[K, VIn, VOut any](p FixedKeyProcessor[K, VIn, VOut]) Processor[K, VIn, K, VOut] {
	return fixedKeyProcessor[K, VIn, VOut]{p}
}

type fixedKeyProcessor[K, VIn, VOut any] struct {
	p FixedKeyProcessor[K, VIn, VOut]
}

func (f fixedKeyProcessor[K, VIn, VOut]) Init(ctx Context[K, VOut]) error {
	return f.p.Init(fixedKeyContext[K, VOut]{ctx})
}

func (f fixedKeyProcessor[K, VIn, VOut]) Process(r Record[K, VIn]) error {
	return f.p.Process(FixedKeyRecord[K, VIn]{key: r.Key, fromInput: true, Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers})
}

func (f fixedKeyProcessor[K, VIn, VOut]) Close() error { return f.p.Close() }

type fixedKeyContext[K, V any] struct{ Context[K, V] }

func unfix[K, V any](r FixedKeyRecord[K, V]) (Record[K, V], error) {
	if !r.fromInput {
		return Record[K, V]{}, ErrNotFromInput
	}
	return Record[K, V]{Key: r.key, Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers}, nil
}

func (c fixedKeyContext[K, V]) Forward(r FixedKeyRecord[K, V]) error {
	rec, err := unfix(r)
	if err != nil {
		return err
	}
	return c.Context.Forward(rec)
}

func (c fixedKeyContext[K, V]) ForwardTo(child string, r FixedKeyRecord[K, V]) error {
	rec, err := unfix(r)
	if err != nil {
		return err
	}
	return c.Context.ForwardTo(child, rec)
}

// FixedKeyProcessor is a Processor that cannot change the key, so the
// topology knows no repartition is needed after it (Kafka Streams'
// FixedKeyProcessor).
type FixedKeyProcessor[K, VIn, VOut any] interface {
	Init(ctx FixedKeyContext[K, VOut]) error
	Process(r FixedKeyRecord[K, VIn]) error
	Close() error
}

// PunctuationType says which clock drives a punctuator.
type PunctuationType int

const (
	// StreamTime punctuators fire as the task's stream time (the largest
	// record timestamp seen) advances; they do not fire without new records.
	StreamTime PunctuationType = iota
	// WallClockTime punctuators fire as the system clock advances, whether or
	// not records arrive.
	WallClockTime
)

// String returns "stream-time" or "wall-clock-time".
func (p PunctuationType) String() string {
	if p == WallClockTime {
		return "wall-clock-time"
	}
	return "stream-time"
}

// Punctuator is called by a scheduled punctuation with the time, in the
// punctuation's clock, at which it fires. An error goes to the processing
// error handler.
type Punctuator func(ts time.Time) error

// Cancellable cancels a scheduled punctuation.
type Cancellable interface {
	Cancel()
}

// RecordMetadata locates the input record being processed in its topic.
type RecordMetadata struct {
	Topic     string
	Partition int32
	Offset    int64
}

// TaskID names a task: the subtopology it runs and the partition it owns.
type TaskID struct {
	Subtopology int
	Partition   int32
}

// String formats the id as Kafka Streams does, e.g. "0_3".
func (id TaskID) String() string { return fmt.Sprintf("%d_%d", id.Subtopology, id.Partition) }

// StoreProvider gives access to the state stores connected to a processor.
type StoreProvider interface {
	// StateStore returns the store registered under name, or an error if no
	// such store is connected to the calling processor.
	StateStore(name string) (any, error)
}

// BaseContext is the part of a processor context that does not depend on
// the output types.
type BaseContext interface {
	StoreProvider
	// ApplicationID returns the application id (Kafka's application.id).
	ApplicationID() string
	// TaskID returns the id of the task running the processor.
	TaskID() TaskID
	// RecordMetadata returns where the current record came from; ok is false
	// inside a punctuator or when the record was not read from a topic.
	RecordMetadata() (md RecordMetadata, ok bool)
	// StreamTime returns the task's stream time: the largest timestamp of
	// any record it has processed.
	StreamTime() time.Time
	// Schedule registers fn to run every interval on the given clock and
	// returns a handle that cancels it.
	Schedule(interval time.Duration, typ PunctuationType, fn Punctuator) Cancellable
	// Commit asks the runtime to commit the task's progress as soon as
	// possible rather than at the next commit interval.
	Commit()
}

// Context is handed to Processor.Init. Forward sends a record to every
// child; ForwardTo sends it to the named child only. Both return the first
// error a child fails with.
type Context[KOut, VOut any] interface {
	BaseContext
	Forward(r Record[KOut, VOut]) error
	ForwardTo(child string, r Record[KOut, VOut]) error
}

// FixedKeyContext is handed to FixedKeyProcessor.Init.
type FixedKeyContext[K, VOut any] interface {
	BaseContext
	Forward(r FixedKeyRecord[K, VOut]) error
	ForwardTo(child string, r FixedKeyRecord[K, VOut]) error
}

// ErrStoreNotFound is returned (wrapped) by Store when no store of that name
// is connected to the processor.
var ErrStoreNotFound = errors.New("state store not connected to processor")

// Store returns the state store registered under name, as type S; for
// example processor.Store[state.KeyValueStore[string, int64]](ctx, "counts").
// It is a function rather than a method because Go methods cannot have type
// parameters.
func Store[S any](ctx StoreProvider, name string) (S, error) {
	var zero S
	s, err := ctx.StateStore(name)
	if err != nil {
		return zero, err
	}
	typed, ok := s.(S)
	if !ok {
		return zero, fmt.Errorf("state store %q is a %T, not a %T", name, s, zero)
	}
	return typed, nil
}

package engine

import "github.com/riffle-stream/riffle/processor"

// Runnable is a processor with its types erased, as a Node runs it.
type Runnable interface {
	Init(ctx NodeContext) error
	Process(r processor.Record[any, any]) error
	Close() error
}

// NodeContext is what the Task gives a Runnable: the processor context,
// with forwarding of erased records (to every child when child is "").
type NodeContext interface {
	processor.BaseContext
	Forward(r processor.Record[any, any], child string) error
}

// As converts an erased value back to T; a nil interface becomes T's zero
// value.
func As[T any](v any) T {
	t, _ := v.(T)
	return t
}

// Erase erases the types of r.
func Erase[K, V any](r processor.Record[K, V]) processor.Record[any, any] {
	return processor.Record[any, any]{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers}
}

// Typed restores the types of an erased record.
func Typed[K, V any](r processor.Record[any, any]) processor.Record[K, V] {
	return processor.Record[K, V]{Key: As[K](r.Key), Value: As[V](r.Value), Timestamp: r.Timestamp, Headers: r.Headers}
}

type typedContext[K, V any] struct{ NodeContext }

func (c typedContext[K, V]) Forward(r processor.Record[K, V]) error {
	return c.NodeContext.Forward(Erase(r), "")
}

func (c typedContext[K, V]) ForwardTo(child string, r processor.Record[K, V]) error {
	return c.NodeContext.Forward(Erase(r), child)
}

type procAdapter[KIn, VIn, KOut, VOut any] struct {
	p processor.Processor[KIn, VIn, KOut, VOut]
}

// Processor erases the types of p.
func Processor[KIn, VIn, KOut, VOut any](p processor.Processor[KIn, VIn, KOut, VOut]) Runnable {
	return &procAdapter[KIn, VIn, KOut, VOut]{p: p}
}

func (a *procAdapter[KIn, VIn, KOut, VOut]) Init(ctx NodeContext) error {
	return a.p.Init(typedContext[KOut, VOut]{ctx})
}

func (a *procAdapter[KIn, VIn, KOut, VOut]) Process(r processor.Record[any, any]) error {
	return a.p.Process(Typed[KIn, VIn](r))
}

func (a *procAdapter[KIn, VIn, KOut, VOut]) Close() error { return a.p.Close() }

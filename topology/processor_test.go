package topology_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

// router sends short values to "short" and long ones to "long", counts
// records per key in a store, and emits the counts from punctuators.
type router struct {
	ctx      processor.Context[string, string]
	store    state.KeyValueStore[string, int64]
	wall     processor.Cancellable
	metadata []processor.RecordMetadata
	closed   *bool
}

func (p *router) Init(ctx processor.Context[string, string]) error {
	p.ctx = ctx
	var err error
	if p.store, err = processor.Store[state.KeyValueStore[string, int64]](ctx, "seen"); err != nil {
		return err
	}
	if _, err := processor.Store[state.KeyValueStore[string, int64]](ctx, "other"); !errors.Is(err, processor.ErrStoreNotFound) {
		return fmt.Errorf("store not connected to router: got %v, want ErrStoreNotFound", err)
	}
	ctx.Schedule(10*time.Second, processor.StreamTime, func(ts time.Time) error {
		return p.emit("stream", ts)
	})
	p.wall = ctx.Schedule(time.Minute, processor.WallClockTime, func(ts time.Time) error {
		if _, ok := ctx.RecordMetadata(); ok {
			return nil
		}
		return p.emit("wall", ts)
	})
	return nil
}

func (p *router) emit(kind string, ts time.Time) error {
	n, err := p.store.ApproximateNumEntries()
	if err != nil {
		return err
	}
	return p.ctx.ForwardTo("ticks", processor.Record[string, string]{Key: kind, Value: strings.Repeat("x", int(n)), Timestamp: ts})
}

func (p *router) Process(r processor.Record[string, string]) error {
	md, ok := p.ctx.RecordMetadata()
	if !ok {
		return nil
	}
	p.metadata = append(p.metadata, md)
	if _, _, err := p.store.PutIfAbsent(r.Key, 1); err != nil {
		return err
	}
	if r.Value == "stop" {
		p.wall.Cancel()
		p.ctx.Commit()
	}
	if len(r.Value) <= 3 {
		return p.ctx.ForwardTo("short", r)
	}
	return p.ctx.ForwardTo("long", r)
}

func (p *router) Close() error { *p.closed = true; return nil }

func TestProcessorAPI(t *testing.T) {
	b := topology.NewBuilder()
	var instance *router
	closed := false
	topology.AddSource(b, "src", serde.String(), serde.String(), "in")
	topology.AddProcessor(b, "router", func() processor.Processor[string, string, string, string] {
		instance = &router{closed: &closed}
		return instance
	}, "src")
	b.AddStore(state.KeyValueBuilder("seen", serde.String(), serde.Int64()), "router")
	b.AddStore(state.KeyValueBuilder("other", serde.String(), serde.Int64(), state.WithoutLogging()))
	topology.AddProcessor(b, "unused", func() processor.Processor[string, string, string, string] {
		return discard{}
	}, "src")
	b.ConnectStore("other", "unused")
	b.ConnectStore("seen", "unused")
	for _, name := range []string{"short", "long", "ticks"} {
		topology.AddSink(b, name, name, serde.String(), serde.String(), "router")
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := build(t, b, streamstest.StartTime(start))
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	ticks := streamstest.NewOutputTopic(d, "ticks", serde.String(), serde.String())

	// The first record fires the stream-time punctuator at once.
	if err := in.PipeAt("a", "abc", start); err != nil {
		t.Fatal(err)
	}
	expect(t, readKV(t, ticks), "stream=x")
	if err := in.PipeAt("b", "abcdef", start.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ticks.Len() != 0 {
		t.Fatalf("stream-time punctuator fired early: %v", readKV(t, ticks))
	}
	if err := in.PipeAt("c", "ab", start.Add(25*time.Second)); err != nil {
		t.Fatal(err)
	}
	expect(t, readKV(t, ticks), "stream=xxx")

	expect(t, readKV(t, streamstest.NewOutputTopic(d, "short", serde.String(), serde.String())), "a=abc", "c=ab")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "long", serde.String(), serde.String())), "b=abcdef")
	if len(instance.metadata) != 3 || instance.metadata[2] != (processor.RecordMetadata{Topic: "in", Partition: 0, Offset: 2}) {
		t.Fatalf("metadata = %+v", instance.metadata)
	}

	if err := d.AdvanceWallClock(59 * time.Second); err != nil {
		t.Fatal(err)
	}
	if ticks.Len() != 0 {
		t.Fatal("wall-clock punctuator fired before its interval")
	}
	if err := d.AdvanceWallClock(time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := ticks.Read()
	if err != nil || r.Key != "wall" || !r.Timestamp.Equal(start.Add(time.Minute)) {
		t.Fatalf("wall tick = %+v, %v", r, err)
	}

	if err := in.PipeAt("d", "stop", start.Add(26*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := d.AdvanceWallClock(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if ticks.Len() != 0 {
		t.Fatalf("cancelled punctuator fired: %v", readKV(t, ticks))
	}
	changelog := streamstest.NewOutputTopic(d, state.ChangelogTopic("streamstest", "seen"), serde.String(), serde.Int64())
	if changelog.Len() != 4 {
		t.Fatalf("changelog has %d records, want 4", changelog.Len())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !closed {
		t.Fatal("Close did not close the processor")
	}
}

type discard struct{}

func (discard) Init(processor.Context[string, string]) error   { return nil }
func (discard) Process(processor.Record[string, string]) error { return nil }
func (discard) Close() error                                   { return nil }

type upper struct {
	ctx processor.FixedKeyContext[string, string]
}

func (u *upper) Init(ctx processor.FixedKeyContext[string, string]) error { u.ctx = ctx; return nil }
func (u *upper) Close() error                                             { return nil }
func (u *upper) Process(r processor.FixedKeyRecord[string, int64]) error {
	return u.ctx.Forward(processor.WithValue(r, strings.ToUpper(r.Key())+strings.Repeat("!", int(r.Value))))
}

func TestFixedKeyProcessorKeepsPartitioning(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, int64](b, []string{"in"})
	shouted := topology.ProcessValues(s, func() processor.FixedKeyProcessor[string, int64, string] { return &upper{} })
	shouted.To("out")
	shouted.GroupByKey().Count(topology.Materialized("n"))
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(engine.Of(top).Subtopologies("app")); n != 1 {
		t.Fatalf("ProcessValues then GroupByKey: %d subtopologies, want 1 (no repartition)", n)
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "in", serde.String(), serde.Int64()), kv("hi", int64(2)))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.String(), serde.String())), "hi=HI!!")
}

type rekey struct {
	ctx processor.Context[int64, string]
}

func (p *rekey) Init(ctx processor.Context[int64, string]) error { p.ctx = ctx; return nil }
func (p *rekey) Close() error                                    { return nil }
func (p *rekey) Process(r processor.Record[string, string]) error {
	return p.ctx.Forward(processor.Record[int64, string]{Key: int64(len(r.Value)), Value: r.Value, Timestamp: r.Timestamp})
}

func TestProcessChangesKeyAndRepartitions(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, string](b, []string{"in"})
	byLen := topology.Process(s, func() processor.Processor[string, string, int64, string] { return &rekey{} })
	byLen.GroupByKey().Count(topology.Materialized("by-len")).ToStream().To("out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(engine.Of(top).Subtopologies("app")); n != 2 {
		t.Fatalf("Process then GroupByKey: %d subtopologies, want 2", n)
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "in", serde.String(), serde.String()), kv("a", "xy"), kv("b", "zw"))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.Int64(), serde.Int64())), "2=1", "2=2")
}

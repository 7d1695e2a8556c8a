package processor_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/processor"
)

type stores map[string]any

func (s stores) StateStore(name string) (any, error) {
	v, ok := s[name]
	if !ok {
		return nil, processor.ErrStoreNotFound
	}
	return v, nil
}

func TestStore(t *testing.T) {
	p := stores{"n": 42}
	if v, err := processor.Store[int](p, "n"); err != nil || v != 42 {
		t.Fatalf("Store[int] = %v, %v", v, err)
	}
	if _, err := processor.Store[string](p, "n"); err == nil {
		t.Fatal("Store with the wrong type: want error")
	}
	if _, err := processor.Store[int](p, "x"); !errors.Is(err, processor.ErrStoreNotFound) {
		t.Fatalf("missing store: %v", err)
	}
}

// recorder is a Context that records what it is given.
type recorder struct {
	stores
	forwarded []processor.Record[string, string]
}

func (*recorder) ApplicationID() string    { return "app" }
func (*recorder) TaskID() processor.TaskID { return processor.TaskID{} }
func (*recorder) RecordMetadata() (processor.RecordMetadata, bool) {
	return processor.RecordMetadata{}, false
}
func (*recorder) StreamTime() time.Time { return time.Time{} }
func (*recorder) Commit()               {}
func (*recorder) Schedule(time.Duration, processor.PunctuationType, processor.Punctuator) processor.Cancellable {
	return nil
}
func (r *recorder) Forward(rec processor.Record[string, string]) error {
	r.forwarded = append(r.forwarded, rec)
	return nil
}
func (r *recorder) ForwardTo(_ string, rec processor.Record[string, string]) error {
	return r.Forward(rec)
}

// shout forwards each value upper-cased, and a record it made itself when
// the value is "forge".
type shout struct {
	ctx processor.FixedKeyContext[string, string]
}

func (s *shout) Init(ctx processor.FixedKeyContext[string, string]) error { s.ctx = ctx; return nil }
func (s *shout) Close() error                                             { return nil }
func (s *shout) Process(r processor.FixedKeyRecord[string, int]) error {
	if r.Value == 0 {
		return s.ctx.Forward(processor.FixedKeyRecord[string, string]{Value: "forged"})
	}
	return s.ctx.Forward(processor.WithValue(r, strings.Repeat("!", r.Value)))
}

func TestFixedKeyProcessorKeepsKeyAndMetadata(t *testing.T) {
	rec := &recorder{}
	p := processor.ProcessorOf[string, int, string](&shout{})
	if err := p.Init(rec); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(100, 0)
	if err := p.Process(processor.Record[string, int]{Key: "k", Value: 2, Timestamp: ts, Headers: []processor.Header{{Key: "h"}}}); err != nil {
		t.Fatal(err)
	}
	if len(rec.forwarded) != 1 {
		t.Fatalf("forwarded %d records", len(rec.forwarded))
	}
	if out := rec.forwarded[0]; out.Key != "k" || out.Value != "!!" || !out.Timestamp.Equal(ts) || len(out.Headers) != 1 {
		t.Fatalf("forwarded %+v", out)
	}
	// A FixedKeyRecord built by the processor would carry another key.
	if err := p.Process(processor.Record[string, int]{Key: "k"}); !errors.Is(err, processor.ErrNotFromInput) {
		t.Fatalf("forwarding a made-up FixedKeyRecord: %v, want ErrNotFromInput", err)
	}
	if len(rec.forwarded) != 1 {
		t.Fatalf("made-up record was forwarded: %+v", rec.forwarded)
	}
}

func TestErrorHandlers(t *testing.T) {
	ec := processor.ErrorContext{Node: "n", Topic: "in", Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte("v")}
	if processor.FailOnError()(ec, errors.New("x")).Action != processor.Fail {
		t.Fatal("FailOnError did not fail")
	}
	if processor.LogAndContinue(slog.Default())(ec, errors.New("x")).Action != processor.Continue {
		t.Fatal("LogAndContinue did not continue")
	}
	resp := processor.DeadLetterQueue("dlq", slog.Default())(ec, errors.New("boom"))
	if resp.Action != processor.Continue || len(resp.DeadLetters) != 1 {
		t.Fatalf("DeadLetterQueue = %+v", resp)
	}
	dl := resp.DeadLetters[0]
	got := map[string]string{}
	for _, h := range dl.Headers {
		got[h.Key] = string(h.Value)
	}
	if dl.Topic != "dlq" || string(dl.Value) != "v" || got[processor.HeaderErrorMessage] != "boom" ||
		got[processor.HeaderErrorTopic] != "in" || got[processor.HeaderErrorPartition] != "2" || got[processor.HeaderErrorOffset] != "7" {
		t.Fatalf("dead letter = %+v", dl)
	}
	if id := (processor.TaskID{Subtopology: 1, Partition: 3}).String(); id != "1_3" {
		t.Fatalf("TaskID = %s", id)
	}
}

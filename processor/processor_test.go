package processor_test

import (
	"errors"
	"log/slog"
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

func TestWithValueKeepsKeyAndMetadata(t *testing.T) {
	ts := time.Unix(100, 0)
	r := processor.NewFixedKeyRecord("k", 1, ts, []processor.Header{{Key: "h"}})
	out := processor.WithValue(r, "one")
	if out.Key() != "k" || out.Value != "one" || !out.Timestamp.Equal(ts) || len(out.Headers) != 1 {
		t.Fatalf("WithValue = %+v", out)
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

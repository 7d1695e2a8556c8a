package streamstest_test

import (
	"errors"
	"testing"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

func TestDriverReadsAndReportsEmptyTopics(t *testing.T) {
	b := topology.NewBuilder()
	topology.FromTopics[string, string](b, []string{"in"}).To("out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	if err := in.Pipe("k", "v"); err != nil {
		t.Fatal(err)
	}
	out := streamstest.NewOutputTopic(d, "out", serde.String(), serde.String())
	r, err := out.Read()
	if err != nil || r.Key != "k" || r.Value != "v" || !r.Timestamp.Equal(d.Now()) {
		t.Fatalf("Read = %+v, %v", r, err)
	}
	if _, err := out.Read(); !errors.Is(err, streamstest.ErrNoRecord) {
		t.Fatalf("Read on empty topic: %v, want ErrNoRecord", err)
	}
	if err := streamstest.NewInputTopic(d, "nobody-reads", serde.String(), serde.String()).Pipe("k", "v"); err == nil {
		t.Fatal("piping into an unread topic: want error")
	}
	if _, err := streamstest.Store[any](d, "missing"); err == nil {
		t.Fatal("missing store: want error")
	}
}

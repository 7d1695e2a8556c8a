package state_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

func TestTimestampedKeyValueStore(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			raw := open("ts")
			b := state.TimestampedKeyValueBuilder("ts", serde.String(), serde.String())
			s, ok := b.Build(raw, "app-ts-changelog").(state.TimestampedKeyValueStore[string, string])
			if !ok {
				t.Fatal("the builder's store is no TimestampedKeyValueStore")
			}
			at := time.UnixMilli(1_700_000_000_123).UTC()
			if err := s.PutWithTimestamp("a", state.ValueAndTimestamp[string]{Value: "x", Timestamp: at}); err != nil {
				t.Fatal(err)
			}
			// The engine holds Kafka's layout: 8-byte big-endian ms, then
			// the value.
			got, err := raw.Get([]byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			want := binary.BigEndian.AppendUint64(nil, uint64(at.UnixMilli()))
			if want = append(want, 'x'); !bytes.Equal(got, want) {
				t.Fatalf("engine holds %x, want %x", got, want)
			}
			// Through the KeyValueStore methods the timestamps are invisible.
			if v, ok, err := s.Get("a"); v != "x" || !ok || err != nil {
				t.Fatalf("Get(a) = %q %v %v", v, ok, err)
			}
			if err := s.Put("b", "y"); err != nil {
				t.Fatal(err)
			}
			if vt, ok, err := s.GetWithTimestamp("b"); vt.Value != "y" || !vt.Timestamp.Equal(state.NoTimestamp) || !ok || err != nil {
				t.Fatalf("GetWithTimestamp(b) = %+v %v %v, want y at NoTimestamp", vt, ok, err)
			}
			if old, ok, err := s.PutIfAbsent("a", "z"); old != "x" || !ok || err != nil {
				t.Fatalf("PutIfAbsent(a) = %q %v %v", old, ok, err)
			}
			all := collect(t, s.All())
			if len(all) != 2 || all[0] != (state.KeyValue[string, string]{Key: "a", Value: "x"}) || all[1].Value != "y" {
				t.Fatalf("All() = %v", all)
			}
			if r := collect(t, s.Range("b", "c")); len(r) != 1 || r[0].Key != "b" {
				t.Fatalf("Range(b, c) = %v", r)
			}
			if old, ok, err := s.Delete("a"); old != "x" || !ok || err != nil {
				t.Fatalf("Delete(a) = %q %v %v", old, ok, err)
			}
			if _, ok, err := s.GetWithTimestamp("a"); ok || err != nil {
				t.Fatalf("a after Delete: %v %v", ok, err)
			}
		})
	}
}

func TestTimestampedRestore(t *testing.T) {
	raw := state.NewMemoryStore("src")
	s := state.TimestampedKeyValueBuilder("src", serde.String(), serde.String()).Build(raw, "users").(state.TimestampedKeyValueStore[string, string])
	at := time.UnixMilli(42).UTC()
	if err := raw.Put([]byte("k"), state.TimestampedRestore([]byte("plain"), at)); err != nil {
		t.Fatal(err)
	}
	if vt, ok, err := s.GetWithTimestamp("k"); vt.Value != "plain" || !vt.Timestamp.Equal(at) || !ok || err != nil {
		t.Fatalf("restored row = %+v %v %v, want plain at %v", vt, ok, err, at)
	}
	if state.TimestampedRestore(nil, at) != nil {
		t.Fatal("a tombstone did not stay nil")
	}
	// An empty value is a row, not a delete.
	if got := state.TimestampedRestore([]byte{}, at); len(got) != 8 {
		t.Fatalf("empty value restored as %x", got)
	}
}

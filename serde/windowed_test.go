package serde_test

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

func TestTimeWindowedLayout(t *testing.T) {
	s := serde.TimeWindowed(serde.String(), time.Minute)
	w := serde.Windowed[string]{Key: "k", Window: serde.NewWindow(258, 258+60_000)}
	b := roundTrip(t, s, w)
	// Kafka's TimeWindowedSerializer: key bytes, then the 8-byte start.
	if want := []byte{'k', 0, 0, 0, 0, 0, 0, 1, 2}; !bytes.Equal(b, want) {
		t.Fatalf("serialized %x, want %x", b, want)
	}
	unknown, err := serde.TimeWindowed(serde.String(), 0).Deserialize("t", b)
	if err != nil || unknown.Window.EndMs() != math.MaxInt64 {
		t.Fatalf("without a size: %v %v, want the end at Long.MAX_VALUE", unknown, err)
	}
	if _, err := s.Deserialize("t", []byte{1, 2, 3}); err == nil {
		t.Fatal("a 3-byte windowed key was accepted")
	}
}

func TestSessionWindowedLayout(t *testing.T) {
	s := serde.SessionWindowed(serde.String())
	b := roundTrip(t, s, serde.Windowed[string]{Key: "k", Window: serde.NewWindow(1, 2)})
	// Kafka's SessionKeySchema: key bytes, the 8-byte end, the 8-byte start.
	if want := []byte{'k', 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1}; !bytes.Equal(b, want) {
		t.Fatalf("serialized %x, want %x", b, want)
	}
	if _, err := s.Deserialize("t", make([]byte, 15)); err == nil {
		t.Fatal("a 15-byte session key was accepted")
	}
}

package serde_test

import (
	"bytes"
	"math"
	"testing"

	"github.com/riffle-stream/riffle/serde"
)

func roundTrip[T comparable](t *testing.T, s serde.Serde[T], v T) []byte {
	t.Helper()
	b, err := s.Serialize("t", v)
	if err != nil {
		t.Fatalf("serialize %v: %v", v, err)
	}
	got, err := s.Deserialize("t", b)
	if err != nil {
		t.Fatalf("deserialize %v: %v", v, err)
	}
	if got != v {
		t.Fatalf("round trip: got %v, want %v", got, v)
	}
	return b
}

func TestKafkaCompatibleEncodings(t *testing.T) {
	if b := roundTrip(t, serde.Int64(), -2); !bytes.Equal(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) {
		t.Errorf("Int64(-2) = %x", b)
	}
	if b := roundTrip(t, serde.Int32(), 258); !bytes.Equal(b, []byte{0, 0, 1, 2}) {
		t.Errorf("Int32(258) = %x", b)
	}
	if b := roundTrip(t, serde.Float64(), 1.5); !bytes.Equal(b, []byte{0x3f, 0xf8, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("Float64(1.5) = %x", b)
	}
	roundTrip(t, serde.Float32(), float32(math.Pi))
	roundTrip(t, serde.Uint64(), math.MaxUint64)
	roundTrip(t, serde.Int(), -7)
	roundTrip(t, serde.String(), "héllo")
}

func TestNullDeserializesToZero(t *testing.T) {
	v, err := serde.Int64().Deserialize("t", nil)
	if err != nil || v != 0 {
		t.Fatalf("Int64 of null = %v, %v", v, err)
	}
	if _, err := serde.Int64().Deserialize("t", []byte{1, 2}); err == nil {
		t.Fatal("Int64 of 2 bytes: want error")
	}
}

func TestJSONAndDefault(t *testing.T) {
	type point struct{ X, Y int }
	roundTrip(t, serde.JSON[point](), point{1, 2})
	roundTrip(t, serde.Default[point](), point{3, 4})
	if _, err := serde.JSON[point]().Deserialize("t", []byte("{")); err == nil {
		t.Fatal("bad JSON: want error")
	}
	if b := roundTrip(t, serde.Default[string](), "x"); string(b) != "x" {
		t.Errorf("Default[string] = %q, want raw bytes", b)
	}
	if b := roundTrip(t, serde.Default[int64](), 1); len(b) != 8 {
		t.Errorf("Default[int64] = %x, want 8 bytes", b)
	}
	b, _ := serde.Default[[]byte]().Serialize("t", []byte("raw"))
	if string(b) != "raw" {
		t.Errorf("Default[[]byte] = %q", b)
	}
}

func TestBytesCopies(t *testing.T) {
	s := serde.Bytes()
	in := []byte("abc")
	out, err := s.Serialize("t", in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = 'x'
	if string(out) != "abc" {
		t.Fatalf("Serialize output changed with its input: %q", out)
	}
	v, err := s.Deserialize("t", out)
	if err != nil {
		t.Fatal(err)
	}
	out[1] = 'y'
	if string(v) != "abc" {
		t.Fatalf("Deserialize output changed with its input: %q", v)
	}
}

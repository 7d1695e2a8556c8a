// Package serde converts typed keys and values to and from the bytes that
// travel through Kafka topics, changelogs and state stores.
//
// A Serde is used at every edge of a topology: sources deserialize, sinks and
// stores serialize. Ready-made serdes cover strings, bytes, fixed-width
// integers and floats (big-endian, byte-compatible with Kafka's
// org.apache.kafka.common.serialization classes) and JSON. Other formats, such
// as protobuf or Avro with a schema registry, plug in by implementing Serde or
// wrapping two functions with Func.
package serde

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// Serde serializes and deserializes values of type T. The topic names the
// topic (or changelog) the bytes belong to, for formats that look up schemas
// per topic. Implementations must be safe for concurrent use.
//
// A nil or empty byte slice stands for Kafka's null; Deserialize returns the
// zero value of T for it.
type Serde[T any] interface {
	Serialize(topic string, v T) ([]byte, error)
	Deserialize(topic string, data []byte) (T, error)
}

type funcSerde[T any] struct {
	ser func(string, T) ([]byte, error)
	de  func(string, []byte) (T, error)
}

func (f funcSerde[T]) Serialize(topic string, v T) ([]byte, error) { return f.ser(topic, v) }

func (f funcSerde[T]) Deserialize(topic string, data []byte) (T, error) {
	if len(data) == 0 {
		var zero T
		return zero, nil
	}
	return f.de(topic, data)
}

// Func builds a Serde from a serialize and a deserialize function. The
// deserialize function is not called for null (empty) data; the zero value is
// returned instead.
func Func[T any](serialize func(topic string, v T) ([]byte, error), deserialize func(topic string, data []byte) (T, error)) Serde[T] {
	return funcSerde[T]{ser: serialize, de: deserialize}
}

// String returns a Serde for UTF-8 strings (Kafka's StringSerde).
func String() Serde[string] {
	return Func(
		func(_ string, v string) ([]byte, error) { return []byte(v), nil },
		func(_ string, b []byte) (string, error) { return string(b), nil },
	)
}

// Bytes returns a Serde for byte slices (Kafka's ByteArraySerde). It copies
// in both directions, so the caller owns what it gets and may reuse what it
// gave.
func Bytes() Serde[[]byte] {
	return Func(
		func(_ string, v []byte) ([]byte, error) { return bytes.Clone(v), nil },
		func(_ string, b []byte) ([]byte, error) { return bytes.Clone(b), nil },
	)
}

func fixed[T any](size int, put func([]byte, T), get func([]byte) T) Serde[T] {
	return Func(
		func(_ string, v T) ([]byte, error) {
			b := make([]byte, size)
			put(b, v)
			return b, nil
		},
		func(topic string, b []byte) (T, error) {
			if len(b) != size {
				var zero T
				return zero, fmt.Errorf("deserialize %d-byte number from topic %q: got %d bytes", size, topic, len(b))
			}
			return get(b), nil
		},
	)
}

// Int64 returns a Serde for 8-byte big-endian integers (Kafka's LongSerde).
func Int64() Serde[int64] {
	return fixed(8,
		func(b []byte, v int64) { binary.BigEndian.PutUint64(b, uint64(v)) },
		func(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) })
}

// Int32 returns a Serde for 4-byte big-endian integers (Kafka's IntegerSerde).
func Int32() Serde[int32] {
	return fixed(4,
		func(b []byte, v int32) { binary.BigEndian.PutUint32(b, uint32(v)) },
		func(b []byte) int32 { return int32(binary.BigEndian.Uint32(b)) })
}

// Uint64 returns a Serde for 8-byte big-endian unsigned integers.
func Uint64() Serde[uint64] {
	return fixed(8, binary.BigEndian.PutUint64, binary.BigEndian.Uint64)
}

// Int returns a Serde for Go ints, encoded as 8-byte big-endian integers so
// that the bytes match Int64.
func Int() Serde[int] {
	return fixed(8,
		func(b []byte, v int) { binary.BigEndian.PutUint64(b, uint64(int64(v))) },
		func(b []byte) int { return int(int64(binary.BigEndian.Uint64(b))) })
}

// Float64 returns a Serde for IEEE 754 doubles, big-endian (Kafka's DoubleSerde).
func Float64() Serde[float64] {
	return fixed(8,
		func(b []byte, v float64) { binary.BigEndian.PutUint64(b, math.Float64bits(v)) },
		func(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) })
}

// Float32 returns a Serde for IEEE 754 floats, big-endian (Kafka's FloatSerde).
func Float32() Serde[float32] {
	return fixed(4,
		func(b []byte, v float32) { binary.BigEndian.PutUint32(b, math.Float32bits(v)) },
		func(b []byte) float32 { return math.Float32frombits(binary.BigEndian.Uint32(b)) })
}

// JSON returns a Serde that encodes T with encoding/json.
func JSON[T any]() Serde[T] {
	return Func(
		func(topic string, v T) ([]byte, error) {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("serialize JSON for topic %q: %w", topic, err)
			}
			return b, nil
		},
		func(topic string, b []byte) (T, error) {
			var v T
			if err := json.Unmarshal(b, &v); err != nil {
				return v, fmt.Errorf("deserialize JSON from topic %q: %w", topic, err)
			}
			return v, nil
		},
	)
}

// Default returns the Serde this package chooses for T when none is given:
// String for string, Bytes for []byte, Int64, Int32, Uint64, Int, Float64 and
// Float32 for those types, and JSON for every other type. It plays the role
// of Kafka Streams' default.key.serde and default.value.serde, chosen by type.
func Default[T any]() Serde[T] {
	var zero T
	var s any
	switch any(zero).(type) {
	case string:
		s = String()
	case []byte:
		s = Bytes()
	case int64:
		s = Int64()
	case int32:
		s = Int32()
	case uint64:
		s = Uint64()
	case int:
		s = Int()
	case float64:
		s = Float64()
	case float32:
		s = Float32()
	default:
		return JSON[T]()
	}
	return s.(Serde[T])
}

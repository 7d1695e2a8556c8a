package state

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

// ValueAndTimestamp is a stored value with the timestamp of the record that
// produced it (Kafka Streams' ValueAndTimestamp). Windowed aggregations keep
// one per window, so an aggregate's result carries the largest timestamp of
// its inputs.
type ValueAndTimestamp[V any] struct {
	Value     V
	Timestamp time.Time
}

type valueAndTimestamp[V any] struct{ inner serde.Serde[V] }

// ValueAndTimestampSerde returns the Serde of ValueAndTimestamp[V] in the
// layout of Kafka Streams' ValueAndTimestampSerializer: the timestamp as an
// 8-byte big-endian count of milliseconds, then the value's bytes.
func ValueAndTimestampSerde[V any](inner serde.Serde[V]) serde.Serde[ValueAndTimestamp[V]] {
	return valueAndTimestamp[V]{inner: inner}
}

func (s valueAndTimestamp[V]) Serialize(topic string, v ValueAndTimestamp[V]) ([]byte, error) {
	vb, err := s.inner.Serialize(topic, v.Value)
	if err != nil {
		return nil, err
	}
	out := make([]byte, timestampSize, timestampSize+len(vb))
	binary.BigEndian.PutUint64(out, uint64(v.Timestamp.UnixMilli()))
	return append(out, vb...), nil
}

func (s valueAndTimestamp[V]) Deserialize(topic string, data []byte) (ValueAndTimestamp[V], error) {
	var v ValueAndTimestamp[V]
	if len(data) == 0 {
		return v, nil
	}
	if len(data) < timestampSize {
		return v, fmt.Errorf("deserialize value and timestamp from %q: %d bytes, need at least %d", topic, len(data), timestampSize)
	}
	inner, err := s.inner.Deserialize(topic, data[timestampSize:])
	if err != nil {
		return v, err
	}
	return ValueAndTimestamp[V]{Value: inner, Timestamp: time.UnixMilli(int64(binary.BigEndian.Uint64(data))).UTC()}, nil
}

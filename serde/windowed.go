package serde

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Window is a time interval of event time: [Start, End) for time windows,
// [Start, End] (both inclusive) for session windows, as in Kafka Streams.
// Both ends have millisecond precision and are in UTC.
type Window struct {
	Start time.Time
	End   time.Time
}

// NewWindow returns the window from start to end, given in milliseconds
// since the epoch.
func NewWindow(startMs, endMs int64) Window {
	return Window{Start: time.UnixMilli(startMs).UTC(), End: time.UnixMilli(endMs).UTC()}
}

// StartMs returns the window's start in milliseconds since the epoch.
func (w Window) StartMs() int64 { return w.Start.UnixMilli() }

// EndMs returns the window's end in milliseconds since the epoch.
func (w Window) EndMs() int64 { return w.End.UnixMilli() }

// String formats the window as Kafka Streams does: "[start,end)" in
// milliseconds.
func (w Window) String() string { return fmt.Sprintf("[%d,%d)", w.StartMs(), w.EndMs()) }

// Windowed is a key together with the window it was aggregated in (Kafka
// Streams' Windowed). It is comparable when K is.
type Windowed[K any] struct {
	Key    K
	Window Window
}

// String formats the windowed key as "key@[start,end)".
func (w Windowed[K]) String() string { return fmt.Sprintf("%v@%v", w.Key, w.Window) }

const timestampSize = 8

type timeWindowed[K any] struct {
	inner  Serde[K]
	sizeMs int64
}

// TimeWindowed returns the Serde for keys of time windows (tumbling,
// hopping and sliding) of the given size, in the layout of Kafka Streams'
// TimeWindowedSerializer: the inner key's bytes followed by the window start
// as an 8-byte big-endian count of milliseconds. The end is not stored;
// Deserialize computes it as start + size. A size of 0 stands for an unknown
// size, and Deserialize then sets the end to the largest time Kafka
// represents (Long.MAX_VALUE milliseconds), as Kafka's deserializer does.
func TimeWindowed[K any](inner Serde[K], size time.Duration) Serde[Windowed[K]] {
	return timeWindowed[K]{inner: inner, sizeMs: size.Milliseconds()}
}

func (s timeWindowed[K]) Serialize(topic string, w Windowed[K]) ([]byte, error) {
	kb, err := s.inner.Serialize(topic, w.Key)
	if err != nil {
		return nil, fmt.Errorf("serialize windowed key: %w", err)
	}
	out := make([]byte, len(kb), len(kb)+timestampSize)
	copy(out, kb)
	return binary.BigEndian.AppendUint64(out, uint64(w.Window.StartMs())), nil
}

func (s timeWindowed[K]) Deserialize(topic string, data []byte) (Windowed[K], error) {
	var w Windowed[K]
	if len(data) == 0 {
		return w, nil
	}
	if len(data) < timestampSize {
		return w, fmt.Errorf("deserialize time-windowed key from topic %q: %d bytes, need at least %d", topic, len(data), timestampSize)
	}
	split := len(data) - timestampSize
	k, err := s.inner.Deserialize(topic, data[:split])
	if err != nil {
		return w, fmt.Errorf("deserialize windowed key: %w", err)
	}
	start := int64(binary.BigEndian.Uint64(data[split:]))
	end := int64(math.MaxInt64)
	if s.sizeMs > 0 && start <= math.MaxInt64-s.sizeMs {
		end = start + s.sizeMs
	}
	return Windowed[K]{Key: k, Window: NewWindow(start, end)}, nil
}

type sessionWindowed[K any] struct{ inner Serde[K] }

// SessionWindowed returns the Serde for keys of session windows, in the
// layout of Kafka Streams' SessionWindowedSerializer: the inner key's bytes,
// then the session's end and then its start, each an 8-byte big-endian
// count of milliseconds.
func SessionWindowed[K any](inner Serde[K]) Serde[Windowed[K]] {
	return sessionWindowed[K]{inner: inner}
}

func (s sessionWindowed[K]) Serialize(topic string, w Windowed[K]) ([]byte, error) {
	kb, err := s.inner.Serialize(topic, w.Key)
	if err != nil {
		return nil, fmt.Errorf("serialize session key: %w", err)
	}
	out := make([]byte, len(kb), len(kb)+2*timestampSize)
	copy(out, kb)
	out = binary.BigEndian.AppendUint64(out, uint64(w.Window.EndMs()))
	return binary.BigEndian.AppendUint64(out, uint64(w.Window.StartMs())), nil
}

func (s sessionWindowed[K]) Deserialize(topic string, data []byte) (Windowed[K], error) {
	var w Windowed[K]
	if len(data) == 0 {
		return w, nil
	}
	if len(data) < 2*timestampSize {
		return w, fmt.Errorf("deserialize session key from topic %q: %d bytes, need at least %d", topic, len(data), 2*timestampSize)
	}
	split := len(data) - 2*timestampSize
	k, err := s.inner.Deserialize(topic, data[:split])
	if err != nil {
		return w, fmt.Errorf("deserialize session key: %w", err)
	}
	end := int64(binary.BigEndian.Uint64(data[split:]))
	start := int64(binary.BigEndian.Uint64(data[split+timestampSize:]))
	return Windowed[K]{Key: k, Window: NewWindow(start, end)}, nil
}

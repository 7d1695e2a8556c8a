package state

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

// SessionStore is a typed store of values per key and session window (Kafka
// Streams' SessionStore). A session is named by its key, start and end, both
// inclusive. Sessions whose end is older than the store's retention, counted
// back from the latest session end written, are invisible and dropped
// segment by segment. Iterators yield a non-nil error at most once, as their
// last element.
type SessionStore[K, V any] interface {
	Store
	// Put stores value for the session. A session already expired is
	// silently not written, as in Kafka.
	Put(session serde.Windowed[K], value V) error
	// Remove deletes the session.
	Remove(session serde.Windowed[K]) error
	// FetchSession returns the value of key's session from start to end.
	FetchSession(key K, start, end time.Time) (V, bool, error)
	// FindSessions iterates over the sessions of key that end at or after
	// earliestEnd and start at or before latestStart, by end, then start.
	FindSessions(key K, earliestEnd, latestStart time.Time) iter.Seq2[KeyValue[serde.Windowed[K], V], error]
	// All iterates over every session of the store: by segment, then by
	// serialized key, end and start.
	All() iter.Seq2[KeyValue[serde.Windowed[K], V], error]
}

type sessionBuilder[K, V any] struct {
	cfg    Config
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// SessionBuilder returns a Builder for a SessionStore named name that keeps
// sessions for retention (Kafka Streams' Stores.persistentSessionStore). Its
// changelog is configured as WindowBuilder's.
func SessionBuilder[K, V any](name string, keys serde.Serde[K], values serde.Serde[V], retention time.Duration, opts ...Opt) (Builder, error) {
	if retention <= 0 {
		return nil, fmt.Errorf("session store %s: retention %v must be positive", name, retention)
	}
	cfg := segmentedConfig(name, retention, 0, sessionSuffix, opts)
	return &sessionBuilder[K, V]{cfg: cfg, keys: keys, values: values}, nil
}

func (b *sessionBuilder[K, V]) Config() Config { return b.cfg }

// SerializeKey implements KeySerializer.
func (b *sessionBuilder[K, V]) SerializeKey(topic string, key K) ([]byte, error) {
	return b.keys.Serialize(topic, key)
}

func (b *sessionBuilder[K, V]) Build(raw RawStore, topic string) Store {
	return &sessionStore[K, V]{windowedCodec[K, V]{raw: raw, topic: topic, keys: b.keys, values: b.values}}
}

type sessionStore[K, V any] struct {
	windowedCodec[K, V]
}

// sessionKey returns Kafka's session store key: the serialized key, the
// session's end and its start.
func sessionKey(kb []byte, startMs, endMs int64) []byte {
	out := make([]byte, len(kb), len(kb)+sessionSuffix)
	copy(out, kb)
	out = binary.BigEndian.AppendUint64(out, uint64(endMs))
	return binary.BigEndian.AppendUint64(out, uint64(startMs))
}

func (s *sessionStore[K, V]) Put(session serde.Windowed[K], value V) error {
	kb, err := s.key(session.Key)
	if err != nil {
		return err
	}
	vb, err := s.value(value)
	if err != nil {
		return err
	}
	return s.raw.Put(sessionKey(kb, session.Window.StartMs(), session.Window.EndMs()), vb)
}

func (s *sessionStore[K, V]) Remove(session serde.Windowed[K]) error {
	kb, err := s.key(session.Key)
	if err != nil {
		return err
	}
	return s.raw.Delete(sessionKey(kb, session.Window.StartMs(), session.Window.EndMs()))
}

func (s *sessionStore[K, V]) FetchSession(key K, start, end time.Time) (V, bool, error) {
	kb, err := s.key(key)
	if err != nil {
		var zero V
		return zero, false, err
	}
	return s.get(sessionKey(kb, start.UnixMilli(), end.UnixMilli()))
}

// scan yields the sessions of raw between the byte bounds whose record key
// equals only (when only is not nil) that end at or after earliestEnd and
// start at or before latestStart.
func (s *sessionStore[K, V]) scan(only, from, to []byte, earliestEnd, latestStart int64) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return s.windowedCodec.scan(only, from, to, earliestEnd, math.MaxInt64, func(k []byte) ([]byte, serde.Window, bool) {
		split := len(k) - sessionSuffix
		endMs := int64(binary.BigEndian.Uint64(k[split:]))
		startMs := int64(binary.BigEndian.Uint64(k[split+timestampSize:]))
		if endMs < earliestEnd || startMs > latestStart {
			return nil, serde.Window{}, false
		}
		return k[:split], serde.NewWindow(startMs, endMs), true
	})
}

func (s *sessionStore[K, V]) FindSessions(key K, earliestEnd, latestStart time.Time) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	kb, err := s.key(key)
	if err != nil {
		return failWindowed[K, V](err)
	}
	lower := sessionKey(kb, 0, max(earliestEnd.UnixMilli(), 0))
	upper := append(sessionKey(kb, math.MaxInt64, math.MaxInt64), 0)
	return s.scan(kb, lower, upper, earliestEnd.UnixMilli(), latestStart.UnixMilli())
}

func (s *sessionStore[K, V]) All() iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return s.scan(nil, nil, nil, math.MinInt64, math.MaxInt64)
}

// Package state holds the state stores that processors read and write:
// typed key-value stores over a byte-level engine, either Pebble (one
// instance per task under the state directory) or memory.
//
// A store seen by a processor is a stack: the typed KeyValueStore serializes
// keys and values; a write-back cache coalesces updates to hot keys between
// commits; a changelogging layer sends every write that leaves the cache to
// the store's compacted changelog topic; the engine keeps the bytes. On
// assignment the runtime restores the engine from the changelog, starting at
// the offset recorded in the task's checkpoint file when local state is
// valid. Keys are ordered by their serialized bytes, as in Kafka Streams.
//
// Window and session stores (WindowStore, SessionStore) add a layer at the
// bottom of the stack that cuts the engine into time segments and drops
// expired ones whole (Config.WrapEngine); they are not cached, and their
// changelogs use Kafka Streams' windowed key layouts.
package state

import (
	"iter"
)

// RawStore is the byte-level interface every engine and layer implements.
// A nil value returned by Get means the key is absent. Slices handed out by
// Get and Scan belong to the caller, and slices passed to Put stay the
// caller's: no later write changes what a caller holds. Implementations
// are used by one task at a time and need not be safe for concurrent use.
type RawStore interface {
	// Name returns the store's name.
	Name() string
	// Get returns the value stored under key, or nil if there is none.
	Get(key []byte) ([]byte, error)
	// Put stores value under key.
	Put(key, value []byte) error
	// Delete removes key.
	Delete(key []byte) error
	// Scan calls yield for each entry with from <= key < to in key order,
	// stopping early when yield returns false. A nil from or to is
	// unbounded.
	Scan(from, to []byte, yield func(key, value []byte) bool) error
	// ApproximateNumEntries estimates the number of entries.
	ApproximateNumEntries() (int64, error)
	// Flush makes every write so far durable in the engine (and, for
	// layers, pushes buffered writes down).
	Flush() error
}

// Store is what every typed store implements.
type Store interface {
	// Name returns the store's name, unique within a topology.
	Name() string
}

// KeyValue is one entry of a KeyValueStore.
type KeyValue[K, V any] struct {
	Key   K
	Value V
}

// KeyValueStore is a typed, ordered key-value store (Kafka Streams'
// KeyValueStore). Iteration order is the order of the serialized keys.
// Iterators yield a non-nil error at most once, as their last element.
type KeyValueStore[K, V any] interface {
	Store
	// Get returns the value for key and whether it was present.
	Get(key K) (V, bool, error)
	// Put stores value under key.
	Put(key K, value V) error
	// PutIfAbsent stores value under key unless a value is present, and
	// returns the value that was present and whether there was one.
	PutIfAbsent(key K, value V) (V, bool, error)
	// Delete removes key and returns the value it held, if any.
	Delete(key K) (V, bool, error)
	// Range iterates over the entries with from <= key <= to.
	Range(from, to K) iter.Seq2[KeyValue[K, V], error]
	// PrefixScan iterates over the entries whose serialized key starts with
	// the serialized prefix.
	PrefixScan(prefix K) iter.Seq2[KeyValue[K, V], error]
	// All iterates over every entry.
	All() iter.Seq2[KeyValue[K, V], error]
	// ApproximateNumEntries estimates the number of entries.
	ApproximateNumEntries() (int64, error)
}

// ChangelogTopic returns the name of a store's changelog topic,
// "<applicationID>-<store>-changelog", as Kafka Streams names it.
func ChangelogTopic(applicationID, store string) string {
	return applicationID + "-" + store + "-changelog"
}

// prefixEnd returns the smallest key greater than every key with the given
// prefix, or nil if there is none.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

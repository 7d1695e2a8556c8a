package streams

import (
	"sync"
	"sync/atomic"
)

type metrics struct {
	processed atomic.Int64
	produced  atomic.Int64
	commits   atomic.Int64
	restored  atomic.Int64
	dropped   atomic.Int64
	tasks     atomic.Int64

	mu  sync.Mutex
	lag map[string]map[int32]int64
}

func (m *metrics) setLag(topic string, partition int32, lag int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lag == nil {
		m.lag = make(map[string]map[int32]int64)
	}
	if m.lag[topic] == nil {
		m.lag[topic] = make(map[int32]int64)
	}
	m.lag[topic][partition] = max(lag, 0)
}

// dropLag forgets the lag of a partition the instance no longer owns.
func (m *metrics) dropLag(topic string, partition int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.lag[topic], partition)
	if len(m.lag[topic]) == 0 {
		delete(m.lag, topic)
	}
}

// Metrics is a snapshot of an App's counters, for logging or export.
type Metrics struct {
	// RecordsProcessed counts input records pushed through tasks.
	RecordsProcessed int64
	// RecordsProduced counts records sent by sinks (changelogs excluded).
	RecordsProduced int64
	// Commits counts successful offset commits.
	Commits int64
	// RecordsRestored counts changelog records replayed into stores.
	RecordsRestored int64
	// RecordsDropped counts the records windowed operations dropped, once
	// per window a record was late for, and once for a record with a null
	// key or value or a negative timestamp (Kafka Streams' dropped-records
	// metric).
	RecordsDropped int64
	// Tasks is the number of tasks currently running.
	Tasks int64
	// Lag is, per input topic and partition the instance owns, the number
	// of records behind the high watermark at the last fetch.
	Lag map[string]map[int32]int64
}

// TotalLag sums Lag.
func (m Metrics) TotalLag() int64 {
	var n int64
	for _, parts := range m.Lag {
		for _, l := range parts {
			n += l
		}
	}
	return n
}

// Metrics returns a snapshot of the App's counters.
func (a *App) Metrics() Metrics {
	m := &a.metrics
	out := Metrics{
		RecordsProcessed: m.processed.Load(),
		RecordsProduced:  m.produced.Load(),
		Commits:          m.commits.Load(),
		RecordsRestored:  m.restored.Load(),
		RecordsDropped:   m.dropped.Load(),
		Tasks:            m.tasks.Load(),
		Lag:              make(map[string]map[int32]int64),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, parts := range m.lag {
		out.Lag[t] = make(map[int32]int64)
		for p, l := range parts {
			out.Lag[t][p] = l
		}
	}
	return out
}

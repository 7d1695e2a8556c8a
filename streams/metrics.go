package streams

import (
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/riffle-stream/riffle/processor"
)

// metrics is the App's instrumentation, the one place its counts live:
// App.Metrics returns a snapshot of it and its Prometheus collectors
// (App.MetricsHandler, MetricsRegisterer) expose it. Counts and gauges are
// plain values read at scrape time; latencies are Prometheus histograms.
// Every series carries the application id as a constant label.
type metrics struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector // the App's own, without Go's and the process's

	commits  atomic.Int64
	restored atomic.Int64
	tasks    atomic.Int64
	// standbys counts the standby tasks running, standbyRecords the
	// changelog records they applied.
	standbys       atomic.Int64
	standbyRecords atomic.Int64

	process *prometheus.HistogramVec // {task}
	commit  prometheus.Histogram
	e2e     *prometheus.HistogramVec // {topic}

	mu sync.Mutex
	// produced holds each thread's count of records its sinks sent: a
	// counter of its own, so that threads do not contend for one cache
	// line on every record.
	produced []*atomic.Int64
	// byTask holds the counts of every task this instance has run: they
	// outlive the task, as counters must, and are bounded by the
	// topology's tasks.
	byTask    map[processor.TaskID]*taskStats
	lag       map[string]map[int32]int64
	restoring map[restoreKey]int64 // changelog records left to replay
}

// taskStats are the counts of one task.
type taskStats struct {
	processed atomic.Int64
	// dropped counts the records the task's windowed operations dropped,
	// as Kafka Streams' dropped-records does: once per window a record was
	// late for (its end plus grace at or before stream time), and once for
	// a record with a null key or value or a negative timestamp.
	// Topologies without windowed operations never drop.
	dropped atomic.Int64
	// punctuations counts the punctuators that fired.
	punctuations atomic.Int64
	// nodes counts the records each node received; metrics.mu guards the
	// map, the counters are atomic.
	nodes map[string]*atomic.Int64
	// process is the task's child of metrics.process.
	process prometheus.Observer
}

type restoreKey struct {
	task  processor.TaskID
	store string
}

// Buckets of the streams latency histograms, in seconds.
var (
	processBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1}
	commitBuckets  = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	e2eBuckets     = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
)

func newMetrics(appID string) *metrics {
	app := prometheus.Labels{"application_id": appID}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		process: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "riffle_streams_process_duration_seconds", ConstLabels: app, Buckets: processBuckets,
			Help: "Time to push one input record through the task's processors, its sink and store writes included.",
		}, []string{"task"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "riffle_streams_commit_duration_seconds", ConstLabels: app, Buckets: commitBuckets,
			Help: "Time a thread takes to commit: flush the stores, await everything produced, commit the input offsets.",
		}),
		e2e: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "riffle_streams_e2e_latency_seconds", ConstLabels: app, Buckets: e2eBuckets,
			Help: "Wall-clock time from a record's timestamp to its output being sent to the topic.",
		}, []string{"topic"}),
		byTask:    make(map[processor.TaskID]*taskStats),
		lag:       make(map[string]map[int32]int64),
		restoring: make(map[restoreKey]int64),
	}
	m.collectors = []prometheus.Collector{m.process, m.commit, m.e2e, &countCollector{m: m, descs: newCountDescs(app)}}
	m.reg.MustRegister(m.collectors...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// task returns the counts of task id, made at its first use.
func (m *metrics) task(id processor.TaskID) *taskStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.byTask[id]
	if ts == nil {
		ts = &taskStats{process: m.process.WithLabelValues(id.String()), nodes: make(map[string]*atomic.Int64)}
		m.byTask[id] = ts
	}
	return ts
}

// node returns the counter of the records node of task id receives.
func (m *metrics) node(id processor.TaskID, node string) *atomic.Int64 {
	ts := m.task(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	c := ts.nodes[node]
	if c == nil {
		c = new(atomic.Int64)
		ts.nodes[node] = c
	}
	return c
}

// nodeTotals returns the records each node received, summed over tasks.
func (m *metrics) nodeTotals() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64)
	for _, ts := range m.byTask {
		for node, n := range ts.nodes {
			out[node] += n.Load()
		}
	}
	return out
}

func (m *metrics) setLag(topic string, partition int32, lag int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lag[topic] == nil {
		m.lag[topic] = make(map[int32]int64)
	}
	m.lag[topic][partition] = max(lag, 0)
}

// setRestoring records how many changelog records a store of a task has
// left to replay; 0 once it is restored.
func (m *metrics) setRestoring(id processor.TaskID, store string, remaining int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.restoring[restoreKey{id, store}] = max(remaining, 0)
}

// producedCounter returns a new counter of records sent by sinks, for one
// thread.
func (m *metrics) producedCounter() *atomic.Int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := new(atomic.Int64)
	m.produced = append(m.produced, c)
	return c
}

// producedTotal sums the threads' counts of records sent by sinks. Call
// it with mu held.
func (m *metrics) producedTotal() int64 {
	var n int64
	for _, c := range m.produced {
		n += c.Load()
	}
	return n
}

// countDescs describe the series countCollector makes.
type countDescs struct {
	processed, dropped, produced, commits, restored, tasks, lag, restoring *prometheus.Desc
	nodeRecords, punctuations, standbys, standbyRecords                    *prometheus.Desc
}

func newCountDescs(app prometheus.Labels) countDescs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, app)
	}
	return countDescs{
		processed: d("riffle_streams_records_processed_total", "Input records the task pushed through its processors.", "task"),
		dropped:   d("riffle_streams_dropped_records_total", "Records the task's windowed operations dropped: late for their window (end plus grace), or with a null key or value or a negative timestamp; 0 without windowed operations.", "task"),
		produced:  d("riffle_streams_records_produced_total", "Records sent by sinks, changelogs excluded."),
		commits:   d("riffle_streams_commits_total", "Offset commits that succeeded."),
		restored:  d("riffle_streams_records_restored_total", "Changelog records replayed into stores."),
		tasks:     d("riffle_streams_tasks", "Tasks running in this instance."),
		lag:       d("riffle_streams_consumer_lag", "Records of an input partition behind its high watermark, as of the last fetch.", "topic", "partition"),
		restoring: d("riffle_streams_restore_remaining_records", "Changelog records a store of the task has left to replay; 0 once restored.", "task", "store"),
		nodeRecords: d("riffle_streams_processor_records_total", "Records a node of the task's topology received (sources: records read; processors and sinks: records forwarded to them).",
			"task", "processor"),
		punctuations:   d("riffle_streams_punctuations_total", "Punctuators of the task that fired.", "task"),
		standbys:       d("riffle_streams_standby_tasks", "Standby tasks running in this instance."),
		standbyRecords: d("riffle_streams_standby_records_total", "Changelog records standby tasks applied to their stores."),
	}
}

// countCollector exposes metrics' counts and gauges at scrape time.
type countCollector struct {
	m     *metrics
	descs countDescs
}

func (c *countCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.descs
	for _, desc := range []*prometheus.Desc{d.processed, d.dropped, d.produced, d.commits, d.restored, d.tasks, d.lag, d.restoring,
		d.nodeRecords, d.punctuations, d.standbys, d.standbyRecords} {
		ch <- desc
	}
}

func (c *countCollector) Collect(ch chan<- prometheus.Metric) {
	m, d := c.m, c.descs
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(d.commits, m.commits.Load())
	counter(d.restored, m.restored.Load())
	gauge(d.tasks, m.tasks.Load())
	gauge(d.standbys, m.standbys.Load())
	counter(d.standbyRecords, m.standbyRecords.Load())
	m.mu.Lock()
	defer m.mu.Unlock()
	counter(d.produced, m.producedTotal())
	for id, ts := range m.byTask {
		counter(d.processed, ts.processed.Load(), id.String())
		counter(d.dropped, ts.dropped.Load(), id.String())
		counter(d.punctuations, ts.punctuations.Load(), id.String())
		for node, n := range ts.nodes {
			counter(d.nodeRecords, n.Load(), id.String(), node)
		}
	}
	for topic, parts := range m.lag {
		for p, l := range parts {
			gauge(d.lag, l, topic, strconv.Itoa(int(p)))
		}
	}
	for k, n := range m.restoring {
		gauge(d.restoring, n, k.task.String(), k.store)
	}
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
	// RecordsRestored counts changelog records replayed into stores by
	// restores of active tasks.
	RecordsRestored int64
	// StandbyRecords counts changelog records standby tasks applied.
	StandbyRecords int64
	// RecordsDropped counts the records windowed operations dropped: late
	// for their window, or with a null key or value or a negative
	// timestamp (Kafka Streams' dropped-records).
	RecordsDropped int64
	// Tasks is the number of tasks currently running.
	Tasks int64
	// StandbyTasks is the number of standby tasks currently running.
	StandbyTasks int64
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
	m := a.metrics
	out := Metrics{
		Commits:         m.commits.Load(),
		RecordsRestored: m.restored.Load(),
		Tasks:           m.tasks.Load(),
		StandbyRecords:  m.standbyRecords.Load(),
		StandbyTasks:    m.standbys.Load(),
		Lag:             make(map[string]map[int32]int64),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out.RecordsProduced = m.producedTotal()
	for _, ts := range m.byTask {
		out.RecordsProcessed += ts.processed.Load()
		out.RecordsDropped += ts.dropped.Load()
	}
	for t, parts := range m.lag {
		out.Lag[t] = maps.Clone(parts)
	}
	return out
}

// MetricsHandler serves the App's series in Prometheus' exposition format,
// with the Go runtime's and the process's, from a registry of the App's
// own. Mount it on the application's HTTP server:
//
//	http.Handle("/metrics", app.MetricsHandler())
//
// The series, each labelled application_id:
//
//	riffle_streams_records_processed_total{task}
//	riffle_streams_process_duration_seconds{task}      histogram, per record
//	riffle_streams_dropped_records_total{task}
//	riffle_streams_commit_duration_seconds             histogram
//	riffle_streams_commits_total
//	riffle_streams_e2e_latency_seconds{topic}          histogram, record timestamp to output
//	riffle_streams_records_produced_total
//	riffle_streams_consumer_lag{topic,partition}
//	riffle_streams_records_restored_total
//	riffle_streams_restore_remaining_records{task,store}
//	riffle_streams_tasks
//	riffle_streams_standby_tasks
//	riffle_streams_standby_records_total
//
// A task's series stay once it moves to another instance, as counters
// must; they are bounded by the topology's tasks.
func (a *App) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{})
}

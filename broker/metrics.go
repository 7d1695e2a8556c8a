package broker

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
)

// series holds a broker's Prometheus series in a registry of its own, so
// that brokers embedded in one process never share or collide. Counters
// and histograms are updated where the data flows, each with a child
// looked up once and kept (per topic on its partitions, per api key
// here), so the request path pays an atomic add; gauges are read from
// their owners at scrape time by collector.
type series struct {
	reg *prometheus.Registry

	recordsIn *prometheus.CounterVec
	bytesIn   *prometheus.CounterVec
	bytesOut  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	requests  *prometheus.HistogramVec
	fsyncs    prometheus.Histogram

	// durations caches requests' child of each api key, made at the
	// first request of that key so that unused apis have no series.
	durations [kmsg.MaxKey + 1]atomic.Pointer[prometheus.Observer]

	mu     sync.Mutex
	topics map[string]*topicCounters
}

// topicCounters are the per-topic counters, shared by the topic's
// partitions.
type topicCounters struct {
	recordsIn, bytesIn, bytesOut prometheus.Counter
}

// Buckets of the latency histograms, in seconds: requests span sub-
// millisecond metadata calls to long polls capped at MaxWait; fsyncs
// span fast NVMe to a struggling disk.
var (
	requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	fsyncBuckets   = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
)

func newSeries(b *Broker) *series {
	m := &series{
		reg: prometheus.NewRegistry(),
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_records_in_total", Help: "Records appended to the topic's partitions by producers.",
		}, []string{"topic"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_bytes_in_total", Help: "Bytes of record batches appended to the topic's partitions by producers.",
		}, []string{"topic"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_bytes_out_total", Help: "Bytes of record batches of the topic sent in Fetch and ShareFetch responses.",
		}, []string{"topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_request_errors_total",
			Help: "Error codes in responses, by request type and Kafka error name; a response counts each topic, partition or group it fails.",
		}, []string{"api", "error"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "riffle_request_duration_seconds",
			Help:    "Time from a request read in full to its response written, by request type; long polls included.",
			Buckets: requestBuckets,
		}, []string{"api"}),
		fsyncs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "riffle_fsync_duration_seconds",
			Help:    "Time taken by each fsync of partition log records: group commits and segment rolls.",
			Buckets: fsyncBuckets,
		}),
		topics: make(map[string]*topicCounters),
	}
	m.reg.MustRegister(m.recordsIn, m.bytesIn, m.bytesOut, m.errors, m.requests, m.fsyncs,
		collector{b},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// topic returns the counters of topic, made at its first use.
func (m *series) topic(name string) *topicCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	tc := m.topics[name]
	if tc == nil {
		tc = &topicCounters{
			recordsIn: m.recordsIn.WithLabelValues(name),
			bytesIn:   m.bytesIn.WithLabelValues(name),
			bytesOut:  m.bytesOut.WithLabelValues(name),
		}
		m.topics[name] = tc
	}
	return tc
}

// forgetTopic drops the series of a deleted topic, so that topics come
// and go without the series piling up.
func (m *series) forgetTopic(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.topics, name)
	m.recordsIn.DeleteLabelValues(name)
	m.bytesIn.DeleteLabelValues(name)
	m.bytesOut.DeleteLabelValues(name)
}

// observeFsync is the partition logs' OnFsync hook.
func (m *series) observeFsync(d time.Duration) { m.fsyncs.Observe(d.Seconds()) }

// requestDone records the duration of a request of api key, read in full
// at start, whose response is written or dropped now, or which has none.
func (m *series) requestDone(key int16, start time.Time) {
	if key < 0 || key > kmsg.MaxKey {
		return
	}
	o := m.durations[key].Load()
	if o == nil {
		h := m.requests.WithLabelValues(kmsg.NameForKey(key))
		o = &h
		m.durations[key].Store(o)
	}
	(*o).Observe(time.Since(start).Seconds())
}

// responseErrors counts the error codes in resp, the response to a
// request of api key.
func (m *series) responseErrors(key int16, resp kmsg.Response) {
	forEachErrorCode(resp, func(code int16) {
		m.errors.WithLabelValues(kmsg.NameForKey(key), errorName(code)).Inc()
	})
}

// errorName names an error code as Kafka's Errors enum does; kerr keeps
// the old name of one code Kafka renamed.
func errorName(code int16) string {
	if code == kerr.NotLeaderForPartition.Code {
		return "NOT_LEADER_OR_FOLLOWER"
	}
	if e, ok := kerr.ErrorForCode(code).(*kerr.Error); ok && e.Code == code {
		return e.Message
	}
	return "UNKNOWN_ERROR_CODE_" + strconv.Itoa(int(code))
}

// forEachErrorCode calls fn with every nonzero ErrorCode field of resp:
// its top-level one and those of its topics, partitions, groups and
// members, wherever kmsg nests them. Produce and Fetch responses, the
// most frequent, are walked directly; the others by reflection.
func forEachErrorCode(resp kmsg.Response, fn func(int16)) {
	switch r := resp.(type) {
	case *kmsg.ProduceResponse:
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				if c := r.Topics[i].Partitions[j].ErrorCode; c != 0 {
					fn(c)
				}
			}
		}
		return
	case *kmsg.FetchResponse:
		if r.ErrorCode != 0 {
			fn(r.ErrorCode)
		}
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				if c := r.Topics[i].Partitions[j].ErrorCode; c != 0 {
					fn(c)
				}
			}
		}
		return
	}
	v := reflect.ValueOf(resp)
	walkErrorCodes(errorPlanFor(v.Type()), v, fn)
}

// errorPlan says where a type keeps ErrorCode fields: its own, at code
// (-1 if none), and the fields below it that lead to one.
type errorPlan struct {
	code   int
	nested []nestedPlan
}

type nestedPlan struct {
	field int
	plan  *errorPlan
}

// errorPlans caches an errorPlan by reflect.Type; a nil plan means the
// type holds no ErrorCode at all.
var errorPlans sync.Map

// errorPlanFor returns the plan of t, a struct, a pointer to one or a
// slice of them, or nil if t holds no ErrorCode field. kmsg's response
// types are trees, so the recursion ends.
func errorPlanFor(t reflect.Type) *errorPlan {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	if p, ok := errorPlans.Load(t); ok {
		return p.(*errorPlan)
	}
	p := &errorPlan{code: -1}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16 {
			p.code = i
			continue
		}
		if np := errorPlanFor(f.Type); np != nil {
			p.nested = append(p.nested, nestedPlan{i, np})
		}
	}
	if p.code < 0 && len(p.nested) == 0 {
		p = nil
	}
	errorPlans.Store(t, p)
	return p
}

func walkErrorCodes(p *errorPlan, v reflect.Value, fn func(int16)) {
	if p == nil {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkErrorCodes(p, v.Elem(), fn)
		}
		return
	case reflect.Slice:
		for i := range v.Len() {
			walkErrorCodes(p, v.Index(i), fn)
		}
		return
	}
	if p.code >= 0 {
		if c := int16(v.Field(p.code).Int()); c != 0 {
			fn(c)
		}
	}
	for _, n := range p.nested {
		walkErrorCodes(n.plan, v.Field(n.field), fn)
	}
}

// collector reads the broker's gauges from their owners at scrape time:
// the partition logs, the group and share coordinators, the metadata
// quorum and the connection table.
type collector struct{ b *Broker }

var (
	connectionsDesc = prometheus.NewDesc("riffle_connections", "Client connections open.", nil, nil)
	raftStateDesc   = prometheus.NewDesc("riffle_raft_state",
		"This node's state in the metadata quorum: 0 follower, 1 candidate, 2 leader, 3 shutdown.", nil, nil)
	raftCommitDesc = prometheus.NewDesc("riffle_raft_commit_index", "The metadata quorum's commit index on this node.", nil, nil)
	logSizeDesc    = prometheus.NewDesc("riffle_log_size_bytes", "Bytes of the partition log's segments.", []string{"topic", "partition"}, nil)
	logEndDesc     = prometheus.NewDesc("riffle_log_end_offset", "The partition log's end offset, the offset of its next record.", []string{"topic", "partition"}, nil)
	dirtyDesc      = prometheus.NewDesc("riffle_log_dirty_ratio",
		"Share of a compacted partition's rolled segment bytes not yet cleaned (compacted topics only).", []string{"topic", "partition"}, nil)
	groupLagDesc = prometheus.NewDesc("riffle_group_lag",
		"Records between the group's committed offset and the partition's high watermark.", []string{"group", "topic", "partition"}, nil)
	groupMembersDesc  = prometheus.NewDesc("riffle_group_members", "Members of the consumer or share group.", []string{"group"}, nil)
	shareInFlightDesc = prometheus.NewDesc("riffle_share_group_records_in_flight",
		"Records of the share partition acquired by a member and not yet acknowledged.", []string{"group", "topic", "partition"}, nil)
	shareArchivedDesc = prometheus.NewDesc("riffle_share_group_records_archived_total",
		"Records of the share group archived since the broker started: rejected, or out of deliveries (share.delivery.count.limit).", []string{"group"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connectionsDesc, raftStateDesc, raftCommitDesc, logSizeDesc, logEndDesc, dirtyDesc,
		groupLagDesc, groupMembersDesc, shareInFlightDesc, shareArchivedDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	b.mu.Lock()
	conns := len(b.conns)
	b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(conns))
	// The stores are set by Start before it marks the broker started, and
	// stay set once closed: their accessors then report what is left.
	if !b.started.Load() {
		return
	}
	state, commit := b.meta.RaftState()
	ch <- prometheus.MustNewConstMetric(raftStateDesc, prometheus.GaugeValue, float64(state))
	ch <- prometheus.MustNewConstMetric(raftCommitDesc, prometheus.GaugeValue, float64(commit))
	img := b.meta.Image()
	parts := b.parts.snapshot()
	compacted := make(map[string]bool)
	for _, p := range parts {
		idx := strconv.Itoa(int(p.index))
		ch <- prometheus.MustNewConstMetric(logSizeDesc, prometheus.GaugeValue, float64(p.log.Size()), p.topic, idx)
		ch <- prometheus.MustNewConstMetric(logEndDesc, prometheus.GaugeValue, float64(p.log.EndOffset()), p.topic, idx)
		compact, ok := compacted[p.topic]
		if !ok {
			compact = isCompacted(img, b.cfg.nodeID, p.topic)
			compacted[p.topic] = compact
		}
		if compact {
			ch <- prometheus.MustNewConstMetric(dirtyDesc, prometheus.GaugeValue, p.log.DirtyRatio(), p.topic, idx)
		}
	}
	for _, g := range b.ext.groups.Stats() {
		ch <- prometheus.MustNewConstMetric(groupMembersDesc, prometheus.GaugeValue, float64(g.Members), g.Group)
		for _, o := range g.Offsets {
			p := b.parts.get(o.Topic, o.Partition)
			if p == nil || (o.TopicID != [16]byte{} && o.TopicID != p.topicID) {
				continue // an offset of a topic gone, or of an older incarnation
			}
			lag := max(0, p.log.HighWatermark()-o.Offset)
			ch <- prometheus.MustNewConstMetric(groupLagDesc, prometheus.GaugeValue, float64(lag), g.Group, o.Topic, strconv.Itoa(int(o.Partition)))
		}
	}
	if b.ext.share.c == nil {
		return
	}
	for _, g := range b.ext.share.c.Stats() {
		ch <- prometheus.MustNewConstMetric(groupMembersDesc, prometheus.GaugeValue, float64(g.Members), g.Group)
		ch <- prometheus.MustNewConstMetric(shareArchivedDesc, prometheus.CounterValue, float64(g.Archived), g.Group)
		for _, p := range g.Partitions {
			ch <- prometheus.MustNewConstMetric(shareInFlightDesc, prometheus.GaugeValue, float64(p.InFlight), g.Group, p.Topic, strconv.Itoa(int(p.Partition)))
		}
	}
}

// isCompacted reports whether topic's cleanup.policy includes compact.
func isCompacted(img *metadata.Image, nodeID int32, topic string) bool {
	policies := strings.Split(topicConfig(img, nodeID, topic, "cleanup.policy"), ",")
	return slices.ContainsFunc(policies, func(p string) bool { return strings.TrimSpace(p) == "compact" })
}

// Package perf generates Kafka-protocol load with franz-go and measures what
// a cluster delivers: produce and consume throughput, and end-to-end latency
// from the moment a record is due to be produced to the moment a consumer
// sees it.
//
// It is the engine behind "riffle perf produce|consume|e2e", which mirrors
// Kafka's kafka-producer-perf-test and kafka-consumer-perf-test, and behind
// the side-by-side benchmark of Riffle against franz-go's kfake in this
// package's tests, run with
//
//	RIFFLE_PERF_COMPARE=1 go test -run TestCompare -v -timeout 30m ./internal/perf
//
// (see compare_test.go for its method and settings). Every run talks to brokers over the network through an
// ordinary kgo client, so the numbers include the client's own costs exactly
// as an application would pay them.
package perf

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Acks is the number of acknowledgements a produce request waits for.
type Acks int8

const (
	// AcksAll waits for every in-sync replica (Kafka's acks=all, or -1).
	AcksAll Acks = -1
	// AcksLeader waits for the partition leader only (acks=1).
	AcksLeader Acks = 1
	// AcksNone does not wait for the broker at all (acks=0).
	AcksNone Acks = 0
)

// ParseAcks parses "all", "-1", "1" or "0".
func ParseAcks(s string) (Acks, error) {
	switch s {
	case "all", "-1":
		return AcksAll, nil
	case "1":
		return AcksLeader, nil
	case "0":
		return AcksNone, nil
	}
	return 0, fmt.Errorf("acks must be all, 1 or 0, not %q", s)
}

// ProducerOpts returns the franz-go options of the acks setting: acks=1
// and acks=0 turn off idempotent writes, which require acks=all.
func (a Acks) ProducerOpts() []kgo.Opt {
	switch a {
	case AcksAll:
		return []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks())}
	case AcksLeader:
		return []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}
	}
	return []kgo.Opt{kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite()}
}

// String returns the acks setting as Kafka's producer config spells it.
func (a Acks) String() string {
	if a == AcksAll {
		return "all"
	}
	return fmt.Sprint(int8(a))
}

// Mode names what a run measures.
type Mode string

const (
	// ModeProduce measures how fast records are acknowledged.
	ModeProduce Mode = "produce"
	// ModeConsume measures how fast records are read from the start of a topic.
	ModeConsume Mode = "consume"
	// ModeEndToEnd measures the delay from producing a record to consuming it.
	ModeEndToEnd Mode = "e2e"
)

// Opt configures a run. Options are applied in order.
type Opt func(*config)

type config struct {
	brokers     []string
	topic       string
	records     int64
	duration    time.Duration
	recordSize  int
	partitions  int32
	acks        Acks
	compression string
	rate        float64
	linger      time.Duration
	onProgress  func(Progress)
	clientOpts  []kgo.Opt
}

func defaultConfig() config {
	return config{
		brokers:     []string{"127.0.0.1:9092"},
		topic:       "riffle-perf",
		records:     -1,
		recordSize:  1024,
		partitions:  3,
		acks:        AcksAll,
		compression: "none",
		linger:      10 * time.Millisecond,
	}
}

// Brokers sets the addresses used to bootstrap the clients.
// Default: "127.0.0.1:9092" (Kafka's bootstrap.servers).
func Brokers(addrs ...string) Opt { return func(c *config) { c.brokers = addrs } }

// Topic sets the topic to load. Default: "riffle-perf" (the perf tools' --topic).
func Topic(name string) Opt { return func(c *config) { c.topic = name } }

// Records bounds the run by a count of records; 0 removes the bound.
// Default: 1,000,000 for produce and e2e (kafka-producer-perf-test's
// --num-records), and every record present when the run starts for consume
// (kafka-consumer-perf-test's --messages).
func Records(n int64) Opt { return func(c *config) { c.records = n } }

// Duration bounds the run by time; 0 removes the bound. Whichever of Records
// and Duration is reached first ends the run. Default: 0; Kafka's perf tools
// have no such bound.
func Duration(d time.Duration) Opt { return func(c *config) { c.duration = d } }

// RecordSize sets the size in bytes of each produced record's value; e2e
// needs at least 8 bytes to carry the timestamp. Default: 1024
// (kafka-producer-perf-test's --record-size).
func RecordSize(n int) Opt { return func(c *config) { c.recordSize = n } }

// Partitions sets the partition count used when produce or e2e creates a
// missing topic; an existing topic is left as it is. Default: 3, in place of
// the broker's num.partitions (kafka-topics --partitions).
func Partitions(n int32) Opt { return func(c *config) { c.partitions = n } }

// WithAcks sets how many acknowledgements each produce request waits for.
// AcksLeader and AcksNone turn off idempotent writes, which require acks=all.
// Default: AcksAll (Kafka's producer acks, default all since Kafka 3.0).
func WithAcks(a Acks) Opt { return func(c *config) { c.acks = a } }

// Compression sets the batch codec: none, gzip, snappy, lz4 or zstd.
// Default: "none" (Kafka's producer compression.type).
func Compression(codec string) Opt { return func(c *config) { c.compression = codec } }

// Rate sets the target records per second across the run; 0 produces as fast
// as the client accepts records. Default: 0 (kafka-producer-perf-test's
// --throughput -1).
func Rate(recordsPerSec float64) Opt { return func(c *config) { c.rate = recordsPerSec } }

// Linger sets how long the producer waits to fill a batch before sending it.
// Default: 10ms (franz-go's default; Kafka's producer linger.ms defaults to 5ms).
func Linger(d time.Duration) Opt { return func(c *config) { c.linger = d } }

// OnProgress registers fn to be called about once a second while a run is
// in progress, from a goroutine of its own. Default: none.
func OnProgress(fn func(Progress)) Opt { return func(c *config) { c.onProgress = fn } }

// ClientOpts appends options to every kgo client a run creates, after the
// ones perf sets, for settings perf does not expose (TLS, SASL, logging).
// Default: none.
func ClientOpts(opts ...kgo.Opt) Opt {
	return func(c *config) { c.clientOpts = append(c.clientOpts, opts...) }
}

func newConfig(mode Mode, opts []Opt) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		o(&c)
	}
	if c.records < 0 {
		c.records = 0
		if mode != ModeConsume {
			c.records = 1_000_000
		}
	}
	switch {
	case len(c.brokers) == 0:
		return c, fmt.Errorf("no brokers to connect to")
	case c.topic == "":
		return c, fmt.Errorf("no topic")
	case c.duration < 0:
		return c, fmt.Errorf("duration %v is negative", c.duration)
	case c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0):
		return c, fmt.Errorf("rate %v is not a non-negative number of records per second", c.rate)
	case c.partitions < 1:
		return c, fmt.Errorf("partitions %d is below 1", c.partitions)
	case c.recordSize < 0:
		return c, fmt.Errorf("record size %d is negative", c.recordSize)
	case mode == ModeEndToEnd && c.recordSize < stampSize:
		return c, fmt.Errorf("record size %d cannot hold the %d-byte timestamp e2e needs", c.recordSize, stampSize)
	case mode != ModeConsume && c.records == 0 && c.duration == 0:
		return c, fmt.Errorf("neither a record count nor a duration bounds the run")
	}
	if _, err := Codec(c.compression); err != nil {
		return c, err
	}
	return c, nil
}

// Codec maps a compression.type name (none, gzip, snappy, lz4, zstd) to
// franz-go's codec.
func Codec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression must be none, gzip, snappy, lz4 or zstd, not %q", name)
}

// Progress is a snapshot of a run in progress.
type Progress struct {
	Mode    Mode
	Elapsed time.Duration
	// Records and Bytes count acknowledged records for produce and consumed
	// records for consume and e2e, since the start of the run.
	Records int64
	Bytes   int64
	// RecordsPerSec and MBPerSec are rates over the interval since the
	// previous snapshot.
	RecordsPerSec float64
	MBPerSec      float64
	// InFlight counts records handed to the producer and not yet
	// acknowledged (produce) or not yet consumed (e2e).
	InFlight int64
}

// String formats p as a one-line progress report.
func (p Progress) String() string {
	return fmt.Sprintf("%s %6.1fs: %d records, %.1f records/s, %.2f MB/s, %d in flight",
		p.Mode, p.Elapsed.Seconds(), p.Records, p.RecordsPerSec, p.MBPerSec, p.InFlight)
}

// Result summarises a finished run.
type Result struct {
	Mode  Mode
	Topic string
	// Records and Bytes count records acknowledged (produce) or consumed
	// (consume, e2e); Bytes counts record values.
	Records int64
	Bytes   int64
	Elapsed time.Duration
	// Latency is set for e2e runs only: from each record's stamp to its
	// consumption.
	Latency *LatencySummary
	// ProduceLatency is set for e2e runs only: from each record's stamp
	// to its acknowledgement by the producer.
	ProduceLatency *LatencySummary
}

// RecordsPerSec is the run's average throughput in records.
func (r Result) RecordsPerSec() float64 { return perSecond(float64(r.Records), r.Elapsed) }

// MBPerSec is the run's average throughput in MiB of record values, the
// unit Kafka's perf tools call MB.
func (r Result) MBPerSec() float64 { return perSecond(float64(r.Bytes)/(1<<20), r.Elapsed) }

func perSecond(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}

// String formats r as a one-line summary in the style of Kafka's perf tools.
func (r Result) String() string {
	s := fmt.Sprintf("%s %s: %d records in %.2fs, %.1f records/s (%.2f MB/s)",
		r.Mode, r.Topic, r.Records, r.Elapsed.Seconds(), r.RecordsPerSec(), r.MBPerSec())
	if r.Latency != nil {
		s += ", latency " + r.Latency.String()
	}
	if r.ProduceLatency != nil {
		s += ", produce latency " + r.ProduceLatency.String()
	}
	return s
}

// MarshalJSON encodes r with rates derived and durations in seconds or
// milliseconds, for --json output.
func (r Result) MarshalJSON() ([]byte, error) {
	type latency struct {
		Count  int     `json:"count"`
		MeanMs float64 `json:"mean_ms"`
		P50Ms  float64 `json:"p50_ms"`
		P99Ms  float64 `json:"p99_ms"`
		P999Ms float64 `json:"p99_9_ms"`
		MaxMs  float64 `json:"max_ms"`
	}
	out := struct {
		Mode           Mode     `json:"mode"`
		Topic          string   `json:"topic"`
		Records        int64    `json:"records"`
		Bytes          int64    `json:"bytes"`
		ElapsedSeconds float64  `json:"elapsed_s"`
		RecordsPerSec  float64  `json:"records_per_s"`
		MBPerSec       float64  `json:"mb_per_s"`
		Latency        *latency `json:"latency,omitempty"`
		ProduceLatency *latency `json:"produce_latency,omitempty"`
	}{
		Mode: r.Mode, Topic: r.Topic, Records: r.Records, Bytes: r.Bytes,
		ElapsedSeconds: r.Elapsed.Seconds(), RecordsPerSec: r.RecordsPerSec(), MBPerSec: r.MBPerSec(),
	}
	if l := r.Latency; l != nil {
		out.Latency = &latency{l.Count, ms(l.Mean), ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max)}
	}
	if l := r.ProduceLatency; l != nil {
		out.ProduceLatency = &latency{l.Count, ms(l.Mean), ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max)}
	}
	return json.Marshal(out)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

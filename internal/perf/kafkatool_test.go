package perf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/kafkatest"
)

// Kafka's own producer benchmark as a second instrument, behind the same
// flag as TestCompare:
//
//	RIFFLE_PERF_COMPARE=1 go test -run TestCompareProducerPerf -v -timeout 60m ./internal/perf
//
// It runs org.apache.kafka.tools.ProducerPerformance (the class behind
// kafka-producer-perf-test.sh, from the kafka-tools jar internal/kafkatest
// resolves) against each system in turn, on fresh brokers in both
// durability modes, with the same rounds, record count, record size and
// partitions as TestCompare (RIFFLE_PERF_* variables), acks=all and
// otherwise the Java producer's defaults (idempotence on, linger.ms=5,
// batch.size=16384, no compression). The tool's JVM gets -Xmx512m. Broker
// CPU and peak RSS are measured as in TestCompare, over the tool's whole
// run.

// Kafka's own consumer benchmark, behind the same flag:
//
//	RIFFLE_PERF_COMPARE=1 go test -run TestCompareConsumerPerf -v -timeout 60m ./internal/perf
//
// It runs org.apache.kafka.tools.ConsumerPerformance (the class behind
// kafka-consumer-perf-test.sh) against each system in turn, on a fresh
// broker in page-cache mode (consuming reads what the page cache holds in
// either mode; page-cache mode keeps the preload fast on Kafka), after
// franz-go has produced the records of TestCompare's configuration. The
// tool runs with its defaults (a consumer group, fetch size 1 MiB per
// partition) and -Xmx512m. records/s is the tool's fetch rate
// (fetch.nMsg.sec: the time after the group's first assignment); broker
// CPU is the broker's utime+stime over the tool's whole run, per GB (10^9
// bytes of record values) consumed.

// consumerToolFigures are what ConsumerPerformance reports, plus the
// broker's cost.
var consumerToolFigures = []figure{
	{"records/s", true},
	{"MB/s", true},
	{"rebalance ms", false},
	{"broker CPU s/GB consumed", false},
}

func TestCompareConsumerPerf(t *testing.T) {
	if os.Getenv("RIFFLE_PERF_COMPARE") == "" {
		t.Skip("set RIFFLE_PERF_COMPARE=1 to run Kafka's consumer perf tool against each system")
	}
	cp, err := kafkatest.Classpath()
	if err != nil {
		t.Skipf("Kafka's tools unavailable: %v", err)
	}
	cc := loadCompareConfig(t)
	systems := compareSystems(t)
	fmt.Printf("kafka-consumer-perf-test against %s: %d rounds, %d records of %d B over %d partitions\n",
		joinSystems(systems, ", "), cc.rounds, cc.records, cc.recordSize, cc.partitions)
	samples := rounds(systems, cc.rounds, func(round int, sys system) map[string]float64 {
		got := measureConsumerTool(t, cp, sys, cc)
		fmt.Printf("  round %d %-6s %9.0f rec/s  %7.1f MB/s  broker %5.2f CPU s/GB\n",
			round+1, sys, got["records/s"], got["MB/s"], got["broker CPU s/GB consumed"])
		return got
	})
	fmt.Printf("\nkafka-consumer-perf-test (medians of %d rounds)\n", cc.rounds)
	if err := printMedians(os.Stdout, systems, samples, consumerToolFigures); err != nil {
		t.Fatal(err)
	}
}

// measureConsumerTool fills a fresh broker and runs ConsumerPerformance
// against it once.
func measureConsumerTool(t *testing.T, cp string, sys system, cc compareConfig) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startServer(t, sys, "nofsync")
	defer c.stop(t)
	const topic = "perf-tool"
	prod, err := Produce(ctx, Brokers(c.address()), Topic(topic), Partitions(int32(cc.partitions)),
		RecordSize(cc.recordSize), WithAcks(AcksAll), Records(int64(cc.records)))
	if err != nil {
		t.Fatalf("%s: preload: %v", sys, err)
	}
	cpu0, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "java", "-Xmx512m", "-cp", cp, "org.apache.kafka.tools.ConsumerPerformance",
		"--bootstrap-server", c.address(), "--topic", topic, "--num-records", strconv.Itoa(cc.records),
		"--timeout", "60000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: ConsumerPerformance: %v\n%s\n%s", sys, err, out, stderr.String())
	}
	cpu1, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := consumerToolStats(string(out))
	if err != nil {
		t.Fatalf("%s: %v\n%s", sys, err, out)
	}
	if got := int64(stats["data.consumed.in.nMsg"]); got < prod.Records {
		t.Fatalf("%s: ConsumerPerformance read %d records, want %d", sys, got, prod.Records)
	}
	return map[string]float64{
		"records/s":                stats["fetch.nMsg.sec"],
		"MB/s":                     stats["fetch.MB.sec"],
		"rebalance ms":             stats["rebalance.time.ms"],
		"broker CPU s/GB consumed": (cpu1 - cpu0) / (float64(prod.Bytes) / 1e9),
	}
}

// consumerToolStats reads ConsumerPerformance's summary: a header line of
// comma-separated names ("start.time, end.time, data.consumed.in.MB, …")
// and a line of values, the first two of them dates.
func consumerToolStats(out string) (map[string]float64, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 2; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "start.time") {
			continue
		}
		names := strings.Split(lines[i], ",")
		values := strings.Split(lines[i+1], ",")
		if len(names) != len(values) {
			return nil, fmt.Errorf("ConsumerPerformance: %d names and %d values", len(names), len(values))
		}
		stats := make(map[string]float64)
		for j := 2; j < len(names); j++ {
			v, err := strconv.ParseFloat(strings.TrimSpace(values[j]), 64)
			if err != nil {
				return nil, fmt.Errorf("ConsumerPerformance: %s: %w", strings.TrimSpace(names[j]), err)
			}
			stats[strings.TrimSpace(names[j])] = v
		}
		return stats, nil
	}
	return nil, errors.New("ConsumerPerformance printed no summary")
}

// toolFigures are what ProducerPerformance reports, plus the broker's cost.
var toolFigures = []figure{
	{"records/s", true},
	{"MB/s", true},
	{"avg latency ms", false},
	{"p50 ms", false},
	{"p99 ms", false},
	{"p99.9 ms", false},
	{"max latency ms", false},
	{"broker CPU s/GB produced", false},
	{"broker peak RSS MiB", false},
}

// toolSummary matches ProducerPerformance's final line, for example
// "2000 records sent, 1834.862385 records/sec (1.79 MB/sec), 280.54 ms avg
// latency, 585.00 ms max latency, 300 ms 50th, 550 ms 95th, 580 ms 99th,
// 585 ms 99.9th."
var toolSummary = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th`)

func TestCompareProducerPerf(t *testing.T) {
	if os.Getenv("RIFFLE_PERF_COMPARE") == "" {
		t.Skip("set RIFFLE_PERF_COMPARE=1 to run Kafka's producer perf tool against each system")
	}
	cp, err := kafkatest.Classpath()
	if err != nil {
		t.Skipf("Kafka's tools unavailable: %v", err)
	}
	cc := loadCompareConfig(t)
	systems := compareSystems(t)
	fmt.Printf("kafka-producer-perf-test against %s: %d rounds per mode, %d records of %d B acks=all over %d partitions\n",
		joinSystems(systems, ", "), cc.rounds, cc.records, cc.recordSize, cc.partitions)
	for _, mode := range []string{"fsync", "nofsync"} {
		samples := rounds(systems, cc.rounds, func(round int, sys system) map[string]float64 {
			got := measureTool(t, cp, sys, mode, cc)
			fmt.Printf("  round %d %-6s %-7s %8.0f rec/s  avg %7.2f ms  p99 %7.0f ms\n",
				round+1, sys, mode, got["records/s"], got["avg latency ms"], got["p99 ms"])
			return got
		})
		fmt.Printf("\nkafka-producer-perf-test, %s (medians of %d rounds)\n", mode, cc.rounds)
		if err := printMedians(os.Stdout, systems, samples, toolFigures); err != nil {
			t.Fatal(err)
		}
		fmt.Println()
	}
}

// measureTool runs ProducerPerformance once against a fresh broker.
func measureTool(t *testing.T, cp string, sys system, mode string, cc compareConfig) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startServer(t, sys, mode)
	defer c.stop(t)
	const topic = "perf-tool"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.address()))
	if err != nil {
		t.Fatal(err)
	}
	created, err := kadm.NewClient(cl).CreateTopic(ctx, int32(cc.partitions), -1, nil, topic)
	cl.Close()
	if err == nil {
		err = created.Err
	}
	if err != nil {
		t.Fatalf("%s: create %s: %v", sys, topic, err)
	}

	cpu0, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "java", "-Xmx512m", "-cp", cp, "org.apache.kafka.tools.ProducerPerformance",
		"--bootstrap-server", c.address(), "--topic", topic,
		"--num-records", strconv.Itoa(cc.records), "--record-size", strconv.Itoa(cc.recordSize),
		"--throughput", "-1", "--command-property", "acks=all")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s/%s: ProducerPerformance: %v\n%s\n%s", sys, mode, err, out, stderr.String())
	}
	cpu1, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	rss, err := peakRSS(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	m := toolSummary.FindAllStringSubmatch(string(out), -1)
	if len(m) == 0 {
		t.Fatalf("%s/%s: no summary line in ProducerPerformance's output:\n%s", sys, mode, out)
	}
	last := m[len(m)-1]
	num := func(i int) float64 {
		v, err := strconv.ParseFloat(last[i], 64)
		if err != nil {
			t.Fatalf("parse %q: %v", last[i], err)
		}
		return v
	}
	if sent := int(num(1)); sent != cc.records {
		t.Fatalf("%s/%s: ProducerPerformance sent %d records, want %d", sys, mode, sent, cc.records)
	}
	return map[string]float64{
		"records/s":                num(2),
		"MB/s":                     num(3),
		"avg latency ms":           num(4),
		"max latency ms":           num(5),
		"p50 ms":                   num(6),
		"p99 ms":                   num(8),
		"p99.9 ms":                 num(9),
		"broker CPU s/GB produced": (cpu1 - cpu0) / (float64(cc.records) * float64(cc.recordSize) / 1e9),
		"broker peak RSS MiB":      float64(rss) / (1 << 20),
	}
}

package perf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
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
		samples := make(map[system]map[string][]float64)
		for _, sys := range systems {
			samples[sys] = make(map[string][]float64)
		}
		for round := range cc.rounds {
			order := slices.Clone(systems)
			shift := round % len(order)
			order = append(order[shift:], order[:shift]...)
			for _, sys := range order {
				got := measureTool(t, cp, sys, mode, cc)
				for k, v := range got {
					samples[sys][k] = append(samples[sys][k], v)
				}
				fmt.Printf("  round %d %-6s %-7s %8.0f rec/s  avg %7.2f ms  p99 %7.0f ms\n",
					round+1, sys, mode, got["records/s"], got["avg latency ms"], got["p99 ms"])
			}
		}
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

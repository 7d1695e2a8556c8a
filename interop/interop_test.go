package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// need returns the path of a client program, or skips the test (fails it
// when RIFFLE_INTEROP_REQUIRED=1) if it is missing.
func need(t *testing.T, program, install string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
		t.Fatalf("%s is required (RIFFLE_INTEROP_REQUIRED=1) but not installed: %s", program, install)
	}
	t.Skipf("%s not installed (%s); skipping", program, install)
	return ""
}

func startBroker(t *testing.T) string {
	t.Helper()
	return startBrokerAt(t, t.TempDir()).Addr()
}

// startBrokerAt runs a broker on a free loopback port with its data in
// dir until the test ends (closing it earlier is fine).
func startBrokerAt(t *testing.T, dir string) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b
}

// run executes a client with a time limit and returns its standard output.
func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestKcat(t *testing.T) {
	kcat := need(t, "kcat", "apt-get install kcat")
	addr := startBroker(t)
	const n = 200
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "key%d:line %d\n", i, i)
	}
	run(t, in.String(), kcat, "-b", addr, "-t", "kcat-lines", "-P", "-K:", "-X", "acks=all", "-z", "lz4")

	out := run(t, "", kcat, "-b", addr, "-t", "kcat-lines", "-C", "-e", "-o", "beginning", "-f", "%k:%s\\n")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n {
		t.Fatalf("kcat consumed %d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("key%d:line %d", i, i); l != want {
			t.Fatalf("line %d = %q, want %q", i, l, want)
		}
	}

	meta := run(t, "", kcat, "-b", addr, "-L", "-J")
	var md kcatMetadata
	if err := json.Unmarshal([]byte(meta), &md); err != nil {
		t.Fatalf("kcat -L -J: %v\n%s", err, meta)
	}
	i := slices.IndexFunc(md.Topics, func(tp kcatTopic) bool { return tp.Topic == "kcat-lines" })
	if len(md.Brokers) != 1 || i < 0 || len(md.Topics[i].Partitions) != 1 || md.Topics[i].Partitions[0].Leader != md.Brokers[0].ID {
		t.Fatalf("kcat -L: unexpected metadata %s", meta)
	}
}

// kcatMetadata is the part of kcat -L -J output the test checks.
type kcatMetadata struct {
	Brokers []struct{ ID int32 } `json:"brokers"`
	Topics  []kcatTopic          `json:"topics"`
}

type kcatTopic struct {
	Topic      string `json:"topic"`
	Partitions []struct {
		Leader int32 `json:"leader"`
	} `json:"partitions"`
}

func TestKafkaJS(t *testing.T) {
	node := need(t, "node", "install Node.js")
	dir, _ := filepath.Abs("kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
			t.Fatalf("kafkajs is not installed: run npm ci in %s", dir)
		}
		t.Skipf("kafkajs not installed (npm ci in %s); skipping", dir)
	}
	addr := startBroker(t)
	out := run(t, "", node, filepath.Join(dir, "basic.js"), addr, "kafkajs-topic", "300")
	var res struct {
		Created     bool `json:"created"`
		Partitions  int  `json:"partitions"`
		Listed      bool `json:"listed"`
		Produced    int  `json:"produced"`
		Consumed    int  `json:"consumed"`
		ConsumedAll bool `json:"consumedAll"`
		Committed   int  `json:"committed"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("kafkajs output: %v\n%s", err, out)
	}
	if !res.Created || res.Partitions != 2 || !res.Listed {
		t.Errorf("kafkajs admin: %+v", res)
	}
	if res.Produced != 300 || res.Consumed != 300 || !res.ConsumedAll {
		t.Errorf("kafkajs produce/consume: %+v", res)
	}
	if res.Committed != 300 {
		t.Errorf("kafkajs committed offsets sum to %d, want 300", res.Committed)
	}
}

// TestKafkaJSTransactions commits a kafkajs transaction with records and
// group offsets, aborts another, and reads the topic back read_committed:
// only the committed records show, and only the committed offset holds.
func TestKafkaJSTransactions(t *testing.T) {
	node := need(t, "node", "install Node.js")
	dir, _ := filepath.Abs("kafkajs")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
		if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
			t.Fatalf("kafkajs is not installed: run npm ci in %s", dir)
		}
		t.Skipf("kafkajs not installed (npm ci in %s); skipping", dir)
	}
	addr := startBroker(t)
	out := run(t, "", node, filepath.Join(dir, "transactions.js"), addr, "kafkajs-txn")
	var res struct {
		CommittedOffset int64    `json:"committedOffset"`
		Values          []string `json:"values"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("kafkajs output: %v\n%s", err, out)
	}
	if want := []string{"committed-0", "committed-1", "committed-2", "last"}; !slices.Equal(res.Values, want) {
		t.Errorf("kafkajs read_committed read %q, want %q", res.Values, want)
	}
	if res.CommittedOffset != 2 {
		t.Errorf("the group's offset is %d, want 2 from the committed transaction", res.CommittedOffset)
	}
}

// TestLibrdkafkaTransactions does what TestKafkaJSTransactions does with
// librdkafka, through confluent-kafka-python (Debian's
// python3-confluent-kafka; kcat has no transactions).
func TestLibrdkafkaTransactions(t *testing.T) {
	python := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import confluent_kafka").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
			t.Fatal("confluent-kafka-python is required (RIFFLE_INTEROP_REQUIRED=1): apt-get install python3-confluent-kafka")
		}
		t.Skip("confluent-kafka-python not installed (apt-get install python3-confluent-kafka); skipping")
	}
	script, _ := filepath.Abs(filepath.Join("librdkafka", "transactions.py"))
	addr := startBroker(t)
	out := run(t, "", python, script, addr, "rdkafka-txn")
	var res struct {
		CommittedOffset int64    `json:"committedOffset"`
		Values          []string `json:"values"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("librdkafka output: %v\n%s", err, out)
	}
	if want := []string{"committed-0", "committed-1", "committed-2", "last"}; !slices.Equal(res.Values, want) {
		t.Errorf("librdkafka read_committed read %q, want %q", res.Values, want)
	}
	if res.CommittedOffset != 2 {
		t.Errorf("the group's offset is %d, want 2 from the committed transaction", res.CommittedOffset)
	}
}

// TestKcatBalancedConsumer reads a four-partition topic with a kcat -G
// member (librdkafka's classic group protocol): it gets every record once,
// and its commits hold, so a later member of the group finds nothing left.
func TestKcatBalancedConsumer(t *testing.T) {
	kcat := need(t, "kcat", "apt-get install kcat")
	addr := startBroker(t)
	const n = 300
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "k%d:v%d\n", i, i)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 4, 1, nil, "kcat-group"); err != nil {
		t.Fatal(err)
	}
	run(t, in.String(), kcat, "-b", addr, "-t", "kcat-group", "-P", "-K:")

	consume := func() []string {
		out := run(t, "", kcat, "-b", addr, "-G", "kcat-g", "-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true",
			"-X", "auto.commit.interval.ms=100", "-e", "-f", "%k\\n", "kcat-group")
		return strings.Fields(out)
	}
	first := consume()
	if len(first) != n {
		t.Fatalf("kcat -G read %d records, want %d", len(first), n)
	}
	slices.Sort(first)
	if len(slices.Compact(first)) != n {
		t.Fatal("kcat -G read a record twice")
	}
	if again := consume(); len(again) != 0 {
		t.Fatalf("a second kcat -G member of the same group read %d records: the first member's commits were lost", len(again))
	}
}

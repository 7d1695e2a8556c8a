package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runCLIWithStdin runs "riffle args..." reading stdin from in.
func runCLIWithStdin(ctx context.Context, in string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := execute(ctx, &output{stdin: strings.NewReader(in), stdout: &stdout, stderr: &stderr}, args)
	return stdout.String(), stderr.String(), err
}

// mustCLI runs "riffle args..." and fails the test if it fails.
func mustCLI(ctx context.Context, t *testing.T, in string, args ...string) string {
	t.Helper()
	out, errOut, err := runCLIWithStdin(ctx, in, args...)
	if err != nil {
		t.Fatalf("riffle %q: %v\nstderr: %s", args, err, errOut)
	}
	return out
}

// consumeAll reads every record of topic with a plain franz-go consumer.
func consumeAll(ctx context.Context, t *testing.T, addr, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s after %d records: %v", topic, len(got), err)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

func TestProduceAndConsumeFormats(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "events", "--partitions", "1", b)

	// From stdin: keys split at the first ":", a line without one has a
	// null key, headers on every record.
	mustCLI(ctx, t, "user1:hello\nuser2:a:b\nno key here\n:empty key\n", "produce", "events", "-K", ":", "-H", "src=cli", "-H", "v=1", b)
	recs := consumeAll(ctx, t, addr, "events", 4)
	wantKeys := [][]byte{[]byte("user1"), []byte("user2"), nil, {}}
	wantValues := []string{"hello", "a:b", "no key here", "empty key"}
	for i, r := range recs {
		if !bytes.Equal(r.Key, wantKeys[i]) || (r.Key == nil) != (wantKeys[i] == nil) || string(r.Value) != wantValues[i] {
			t.Errorf("record %d: key %q value %q, want %q %q", i, r.Key, r.Value, wantKeys[i], wantValues[i])
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != "src" || string(r.Headers[0].Value) != "cli" || r.Headers[1].Key != "v" {
			t.Errorf("record %d headers %v", i, r.Headers)
		}
	}

	out := mustCLI(ctx, t, "", "consume", "events", "-e", "-f", `%t|%p|%o|%k|%K|%v|%S|%h\n`, b)
	want := "events|0|0|user1|5|hello|5|src=cli,v=1\n" +
		"events|0|1|user2|5|a:b|3|src=cli,v=1\n" +
		"events|0|2||-1|no key here|11|src=cli,v=1\n" +
		"events|0|3||0|empty key|9|src=cli,v=1\n"
	if out != want {
		t.Fatalf("consume -f printed\n%s\nwant\n%s", out, want)
	}
	if out := mustCLI(ctx, t, "", "consume", "events", "-e", "-K", `\t`, b); !strings.HasPrefix(out, "user1\thello\nuser2\ta:b\n") {
		t.Fatalf("consume -K printed %q", out)
	}
	if out := mustCLI(ctx, t, "", "consume", "events", "-e", "-c", "1", "-K", `%\\`, b); out != `user1%\hello`+"\n" {
		t.Fatalf(`consume -K %%\\ printed %q`, out)
	}
	out = mustCLI(ctx, t, "", "consume", "events", "-e", "-f", `%T %% %s\n`, "-c", "1", b)
	if ts := recs[0].Timestamp.UnixMilli(); out != strings.Join([]string{itoa(ts), "%", "hello"}, " ")+"\n" {
		t.Fatalf("consume %%T %%%% %%s printed %q, want timestamp %d", out, ts)
	}

	// A file with another delimiter, -Z for tombstones and a fixed partition.
	mustCLI(ctx, t, "", "topic", "create", "compacted", "--partitions", "3", b)
	file := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(file, []byte("a=1;b=;c=3"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(ctx, t, "", "produce", "compacted", "--file", file, "-D", ";", "-K", "=", "-Z", "-p", "2", b)
	recs = consumeAll(ctx, t, addr, "compacted", 3)
	for i, r := range recs {
		if r.Partition != 2 {
			t.Errorf("record %d went to partition %d, want 2", i, r.Partition)
		}
	}
	if string(recs[1].Key) != "b" || recs[1].Value != nil || string(recs[2].Value) != "3" {
		t.Fatalf("-Z: records %q=%q %q=%q", recs[1].Key, recs[1].Value, recs[2].Key, recs[2].Value)
	}

	// JSON lines out, then back in: bytes that are not UTF-8 and null
	// values survive the round trip.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	raw := &kgo.Record{Topic: "events", Key: []byte{0xff, 0x00}, Value: []byte{0xc3, 0x28},
		Headers: []kgo.RecordHeader{{Key: "bin", Value: []byte{0xfe}}, {Key: "empty"}}}
	if err := cl.ProduceSync(ctx, raw, &kgo.Record{Topic: "events", Key: []byte("tomb")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lines := mustCLI(ctx, t, "", "consume", "events", "-e", "--output", "json", b)
	sc := bufio.NewScanner(strings.NewReader(lines))
	var parsed []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("consume --output json printed %q: %v", sc.Text(), err)
		}
		parsed = append(parsed, m)
	}
	if len(parsed) != 6 || parsed[0]["key"] != "user1" || parsed[0]["offset"] != 0.0 || parsed[4]["key_b64"] != "/wA=" ||
		parsed[4]["value_b64"] != "wyg=" || parsed[5]["value"] != nil || parsed[5]["key"] != "tomb" {
		t.Fatalf("consume --output json printed:\n%s", lines)
	}
	mustCLI(ctx, t, "", "topic", "create", "events-copy", "--partitions", "1", b)
	produced := mustCLI(ctx, t, lines, "produce", "events-copy", "--input", "json", "--output", "json", b)
	if n := strings.Count(produced, `"offset"`); n != 6 || !strings.Contains(produced, `{"record":6,"partition":0,"offset":5}`) {
		t.Fatalf("produce --output json printed %q", produced)
	}
	orig, copied := consumeAll(ctx, t, addr, "events", 6), consumeAll(ctx, t, addr, "events-copy", 6)
	for i := range orig {
		o, c := orig[i], copied[i]
		if !bytes.Equal(o.Key, c.Key) || (o.Key == nil) != (c.Key == nil) || !bytes.Equal(o.Value, c.Value) ||
			(o.Value == nil) != (c.Value == nil) || !o.Timestamp.Equal(c.Timestamp) || len(o.Headers) != len(c.Headers) {
			t.Fatalf("record %d copied as %+v, was %+v", i, c, o)
		}
		for j := range o.Headers {
			if o.Headers[j].Key != c.Headers[j].Key || !bytes.Equal(o.Headers[j].Value, c.Headers[j].Value) {
				t.Fatalf("record %d header %d copied as %v, was %v", i, j, c.Headers[j], o.Headers[j])
			}
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// newTestAdmin returns an admin client of addr, closed with the test.
func newTestAdmin(t *testing.T, addr string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func TestProduceKeyedPartitioning(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "keyed", "--partitions", "4", b)
	var in strings.Builder
	for i := range 40 {
		in.WriteString("key" + itoa(int64(i%8)) + ":v\n")
	}
	in.WriteString("u1\nu2\nu3\nu4\n")
	mustCLI(ctx, t, in.String(), "produce", "keyed", "-K", ":", b)
	recs := consumeAll(ctx, t, addr, "keyed", 44)
	// Every key lands on one partition, the one franz-go's default
	// (Kafka's murmur2) partitioner picks; unkeyed records spread out.
	hash := kgo.StickyKeyPartitioner(nil).ForTopic("keyed")
	unkeyed := map[int32]bool{}
	for _, r := range recs {
		if r.Key == nil {
			unkeyed[r.Partition] = true
			continue
		}
		if want := int32(hash.Partition(r, 4)); r.Partition != want {
			t.Errorf("key %s on partition %d, want %d", r.Key, r.Partition, want)
		}
	}
	if len(unkeyed) != 4 {
		t.Errorf("4 unkeyed records went to partitions %v, want all 4", unkeyed)
	}

	for _, args := range [][]string{
		{"produce", "keyed", "-p", "4"},
		{"produce"},
		{"produce", "keyed", "--acks", "2"},
		{"produce", "keyed", "-H", "novalue"},
		{"produce", "keyed", "--input", "xml"},
		{"produce", "keyed", "--file", "/nonexistent"},
	} {
		if _, _, err := runCLIWithStdin(ctx, "x\n", append(args, b)...); err == nil {
			t.Errorf("riffle %q succeeded", args)
		}
	}
	// A bad JSON line fails alone; the others are produced.
	_, errOut, err := runCLIWithStdin(ctx, "{\"value\":\"ok\"}\nnot json\n{\"value\":\"ok2\",\"partition\":9}\n{\"value\":\"ok3\"}\n",
		"produce", "keyed", "--input", "json", b)
	if err == nil || !strings.Contains(err.Error(), "2 of 4 records failed") || !strings.Contains(errOut, "record 2:") || !strings.Contains(errOut, "record 3: partition 9") {
		t.Fatalf("produce of bad JSON: %v, stderr %q", err, errOut)
	}
	ends, err := newTestAdmin(t, addr).ListEndOffsets(ctx, "keyed")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 46 {
		t.Fatalf("%d records in keyed, want 46", total)
	}
}

func TestConsumeOffsets(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "log", "--partitions", "2", b)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 10 {
		for p := range int32(2) {
			r := &kgo.Record{Topic: "log", Partition: p, Value: []byte(itoa(int64(i))), Timestamp: base.Add(time.Duration(i) * time.Second)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// offsets consumes with -e and returns the offsets printed per partition.
	offsets := func(args ...string) map[string][]string {
		t.Helper()
		out := mustCLI(ctx, t, "", append([]string{"consume", "log", "-e", "-f", `%p %o\n`, b}, args...)...)
		got := map[string][]string{}
		for l := range strings.Lines(out) {
			p, o, _ := strings.Cut(strings.TrimSpace(l), " ")
			got[p] = append(got[p], o)
		}
		return got
	}
	for _, tc := range []struct {
		args []string
		want []string // offsets of each partition
	}{
		{nil, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{[]string{"-o", "beginning"}, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{[]string{"-o", "end"}, nil},
		{[]string{"-o", "7"}, []string{"7", "8", "9"}},
		{[]string{"-o", "-2"}, []string{"8", "9"}},
		{[]string{"-o", "+8"}, []string{"8", "9"}},
		{[]string{"-o", "-50"}, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
		{[]string{"-o", "99"}, nil},
		{[]string{"-o", "@" + itoa(base.Add(6*time.Second).UnixMilli())}, []string{"6", "7", "8", "9"}},
		{[]string{"-o", "s@" + base.Add(8500*time.Millisecond).UTC().Format(time.RFC3339Nano)}, []string{"9"}},
		{[]string{"-o", "@" + itoa(base.Add(time.Hour).UnixMilli())}, nil},
		{[]string{"-o", "5", "--isolation", "read_committed"}, []string{"5", "6", "7", "8", "9"}},
	} {
		got := offsets(tc.args...)
		for _, p := range []string{"0", "1"} {
			if !slices.Equal(got[p], tc.want) {
				t.Errorf("consume %q: partition %s offsets %v, want %v", tc.args, p, got[p], tc.want)
			}
		}
	}
	if got := offsets("-p", "1", "-o", "-3"); got["0"] != nil || !slices.Equal(got["1"], []string{"7", "8", "9"}) {
		t.Errorf("consume -p 1 -o -3: %v", got)
	}
	if out := mustCLI(ctx, t, "", "consume", "log", "-c", "3", "-f", "x", b); out != "xxx" {
		t.Errorf("consume -c 3 printed %q", out)
	}
	for _, args := range [][]string{
		{"consume"},
		{"consume", "log", "-o", "soon"},
		{"consume", "log", "-f", "%q"},
		{"consume", "log", "-p", "7"},
		{"consume", "log", "-p", "x"},
		{"consume", "log", "-p", "0", "-G", "g"},
		{"consume", "log", "--isolation", "serializable"},
		{"consume", "nosuchtopic", "-e"},
	} {
		if _, _, err := runCLI(ctx, append(args, b)...); err == nil {
			t.Errorf("riffle %q succeeded", args)
		}
	}

	// Without -e and -c consume runs until it is interrupted.
	short, stop := context.WithTimeout(ctx, 500*time.Millisecond)
	defer stop()
	out, _, err := runCLI(short, "consume", "log", "-o", "-1", b)
	if err != nil || out != "9\n9\n" {
		t.Fatalf("interrupted consume: %q, %v", out, err)
	}
}

func TestConsumeGroup(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "jobs", "--partitions", "3", b)
	var in strings.Builder
	for i := range 30 {
		in.WriteString("job" + itoa(int64(i)) + "\n")
	}
	mustCLI(ctx, t, in.String(), "produce", "jobs", b)

	// -c 10: the group commits the ten records printed, no more.
	out := mustCLI(ctx, t, "", "consume", "jobs", "-G", "workers", "-c", "10", b)
	if n := strings.Count(out, "\n"); n != 10 {
		t.Fatalf("consume -G -c 10 printed %d records:\n%s", n, out)
	}
	adm := newTestAdmin(t, addr)
	committed, err := adm.FetchOffsets(ctx, "workers")
	if err != nil {
		t.Fatal(err)
	}
	sum := int64(0)
	committed.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 10 {
		t.Fatalf("group committed %d records, want 10", sum)
	}
	// -e reads the other 20 and stops; a second run has nothing left.
	rest := mustCLI(ctx, t, "", "consume", "jobs", "-G", "workers", "-e", b)
	seen := strings.Fields(out + rest)
	slices.Sort(seen)
	if len(seen) != 30 || len(slices.Compact(seen)) != 30 {
		t.Fatalf("two group runs printed %d records (%d distinct), want 30", len(seen), len(slices.Compact(seen)))
	}
	if again := mustCLI(ctx, t, "", "consume", "jobs", "-G", "workers", "-e", b); again != "" {
		t.Fatalf("third group run printed %q", again)
	}
	// Two members of a new group share the partitions; with -e both stop,
	// and together they print every record (at least once: a rebalance
	// may hand over a partition before its offsets are committed).
	type result struct {
		out string
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			out, _, err := runCLI(ctx, "consume", "jobs", "-G", "pair", "-e", b)
			results <- result{out, err}
		}()
	}
	var both []string
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("a member of two: %v", r.err)
		}
		both = append(both, strings.Fields(r.out)...)
	}
	slices.Sort(both)
	if len(slices.Compact(both)) != 30 {
		t.Fatalf("two members printed %d distinct records, want 30", len(slices.Compact(both)))
	}

	// A new group with -o end starts at the end and has nothing to print.
	if fresh := mustCLI(ctx, t, "", "consume", "jobs", "-G", "latecomers", "-o", "end", "-e", b); fresh != "" {
		t.Fatalf("-G -o end printed %q", fresh)
	}
}

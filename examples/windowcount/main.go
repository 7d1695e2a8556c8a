// Command windowcount counts records per key in time windows with a Riffle
// Streams topology and prints the final count of every window.
//
//	go run ./examples/windowcount -input FILE [-window 1m] [-advance 1m] [-grace 10s] [-brokers host:port]
//
// Each input line is "<epoch-ms> <key>". The lines are produced in file
// order to a one-partition input topic, keyed by key, each record's
// timestamp set to its epoch-ms. The topology counts the records per key in
// windows of the given size starting every advance (tumbling when advance
// equals the size, hopping when it is smaller), aligned to the epoch; a
// record arriving when stream time has reached a window's end plus the
// grace period is late for that window and dropped, as Kafka Streams drops
// it. Once the whole input is processed the program prints, from the
// windowed table's final state, one line "<window-start-ms> <key> <count>"
// per window holding at least one record, sorted by window start, then key.
//
// Without -brokers it starts Riffle's broker in-process, with its data under
// the state directory.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/streams/embedded"
	"github.com/riffle-stream/riffle/topology"
)

func main() {
	cfg, input, err := parseArgs(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "windowcount:", err)
		os.Exit(2)
	}
	f, err := os.Open(input)
	if err != nil {
		fmt.Fprintln(os.Stderr, "windowcount:", err)
		os.Exit(1)
	}
	defer f.Close()
	if err := run(context.Background(), f, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "windowcount:", err)
		os.Exit(1)
	}
}

// parseArgs reads the command line into a config and the input file name.
func parseArgs(args []string) (config, string, error) {
	fs := flag.NewFlagSet("windowcount", flag.ContinueOnError)
	input := fs.String("input", "", "file of \"<epoch-ms> <key>\" lines (required)")
	window := fs.Duration("window", time.Minute, "window size")
	advance := fs.Duration("advance", time.Minute, "distance between window starts (default: the window size)")
	grace := fs.Duration("grace", 10*time.Second, "grace period after a window's end during which late records are still counted")
	brokers := fs.String("brokers", "", "comma-separated host:port of an external cluster (default: start an embedded Riffle broker)")
	stateDir := fs.String("state", "", "state directory (default: a fresh temporary directory)")
	verbose := fs.Bool("v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return config{}, "", err
	}
	advanceSet := false
	fs.Visit(func(f *flag.Flag) { advanceSet = advanceSet || f.Name == "advance" })
	if !advanceSet {
		*advance = *window
	}
	if *input == "" {
		return config{}, "", errors.New("-input is required")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := config{
		windows:  topology.HoppingWindows(*window, *advance).WithGrace(*grace),
		stateDir: *stateDir,
		logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if *brokers != "" {
		cfg.brokers = strings.Split(*brokers, ",")
	}
	return cfg, *input, nil
}

type config struct {
	windows  topology.TimeWindows
	brokers  []string
	stateDir string
	logger   *slog.Logger
}

// record is one input line.
type record struct {
	ts   int64
	key  string
	line string
}

// parse reads "<epoch-ms> <key>" lines; blank lines are skipped.
func parse(in io.Reader) ([]record, error) {
	var out []record
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"<epoch-ms> <key>\", got %q", n, sc.Text())
		}
		ts, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || ts < 0 {
			return nil, fmt.Errorf("line %d: %q is not a non-negative epoch-ms timestamp", n, fields[0])
		}
		out = append(out, record{ts: ts, key: fields[1], line: sc.Text()})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	return out, nil
}

// Topology counts the records of input per key and window and writes every
// update of the windowed table to output.
func Topology(input, output string, w topology.TimeWindows) (*topology.Topology, error) {
	b := topology.NewBuilder()
	records := topology.FromTopics[string, string](b, []string{input})
	counts := topology.WindowedBy(records.GroupByKey(), w).Count(topology.Materialized("window-counts"))
	counts.ToStream().To(output)
	return b.Build()
}

// window is one line of the result.
type window struct {
	start int64
	key   string
	count int64
}

func run(ctx context.Context, in io.Reader, out io.Writer, cfg config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	records, err := parse(in)
	if err != nil {
		return err
	}
	// A fresh application id and topics per run keep runs against a
	// long-lived cluster independent.
	runID := fmt.Sprintf("windowcount-%d", time.Now().UnixNano())
	input, output := runID+"-input", runID+"-output"
	top, err := Topology(input, output, cfg.windows)
	if err != nil {
		return err
	}
	if cfg.stateDir == "" {
		dir, err := os.MkdirTemp("", "riffle-windowcount-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.stateDir = dir
	}
	if len(cfg.brokers) == 0 {
		addr, stop, err := embedded.Broker()(ctx, filepath.Join(cfg.stateDir, "broker"), cfg.logger)
		if err != nil {
			return err
		}
		defer stop(context.WithoutCancel(ctx))
		cfg.brokers = []string{addr}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// The epoch-ms timestamps may lie anywhere in time: let the topics
	// accept them all.
	anyTime := map[string]*string{
		"message.timestamp.before.max.ms": kadm.StringPtr(strconv.FormatInt(math.MaxInt64, 10)),
		"message.timestamp.after.max.ms":  kadm.StringPtr(strconv.FormatInt(math.MaxInt64, 10)),
	}
	for _, topic := range []string{input, output} {
		resp, err := adm.CreateTopic(ctx, 1, -1, anyTime, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	// The value is the line: aggregations skip records with a null value.
	for _, r := range records {
		cl.Produce(ctx, &kgo.Record{Topic: input, Key: []byte(r.key), Value: []byte(r.line), Timestamp: time.UnixMilli(r.ts)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce input: %w", err)
	}

	app, err := streams.New(top,
		streams.ApplicationID(runID),
		streams.Brokers(cfg.brokers...),
		streams.StateDir(cfg.stateDir),
		streams.CommitInterval(100*time.Millisecond),
		streams.Logger(cfg.logger))
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- app.Run(ctx) }()
	if err := awaitProcessed(ctx, app, int64(len(records)), runErr); err != nil {
		app.Close()
		return err
	}
	// Close commits: the stores are flushed and every update produced.
	app.Close()
	if err := <-runErr; err != nil {
		return err
	}
	counts, err := readTable(ctx, cl, cfg.brokers, output, cfg.windows.Size())
	if err != nil {
		return err
	}
	for _, w := range counts {
		fmt.Fprintf(out, "%d %s %d\n", w.start, w.key, w.count)
	}
	return nil
}

// awaitProcessed waits until the app has processed n input records.
func awaitProcessed(ctx context.Context, app *streams.App, n int64, runErr <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for app.Metrics().RecordsProcessed < n {
		select {
		case err := <-runErr:
			if err == nil {
				err = errors.New("application stopped early")
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// readTable reads topic up to its end and returns the latest count of every
// window, sorted by start, then key.
func readTable(ctx context.Context, cl *kgo.Client, brokers []string, topic string, size time.Duration) ([]window, error) {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offset of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("end offset of %s: %v", topic, end.Err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	defer consumer.Close()
	keys := serde.TimeWindowed(serde.String(), size)
	latest := make(map[topology.Windowed[string]]int64)
	for next := int64(0); next < end.Offset; {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ferr)
		}
		for _, r := range fetches.Records() {
			w, err := keys.Deserialize(topic, r.Key)
			if err != nil {
				return nil, err
			}
			n, err := serde.Int64().Deserialize(topic, r.Value)
			if err != nil {
				return nil, err
			}
			latest[w] = n
			next = r.Offset + 1
		}
	}
	out := make([]window, 0, len(latest))
	for w, n := range latest {
		out = append(out, window{start: w.Window.StartMs(), key: w.Key, count: n})
	}
	slices.SortFunc(out, func(a, b window) int {
		return cmp.Or(cmp.Compare(a.start, b.start), bytes.Compare([]byte(a.key), []byte(b.key)))
	})
	return out, nil
}

// Command wordcount counts the words of a text with a Riffle Streams
// topology and prints one "word count" line per word, sorted by word.
//
//	go run ./examples/wordcount -input FILE      # embedded Riffle broker
//	go run ./examples/wordcount -brokers host:port < FILE
//
// Without -brokers it starts Riffle's broker in-process, with its data under
// the state directory, so the one binary is broker and application. It
// produces the lines to an input topic, runs the topology (split into words,
// re-key by word through a repartition topic, count per word in a Pebble
// store) and, once every word is counted, prints the counts.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/streams/embedded"
	"github.com/riffle-stream/riffle/topology"
)

func main() {
	input := flag.String("input", "", "file to count the words of (default: stdin)")
	brokers := flag.String("brokers", "", "comma-separated host:port of an external cluster (default: start an embedded Riffle broker)")
	stateDir := flag.String("state", "", "state directory (default: a fresh temporary directory)")
	partitions := flag.Int("partitions", 4, "partitions of the input topic")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	in := io.Reader(os.Stdin)
	if *input != "" {
		f, err := os.Open(*input)
		if err != nil {
			fmt.Fprintln(os.Stderr, "wordcount:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	cfg := config{partitions: int32(*partitions), stateDir: *stateDir, logger: logger}
	if *brokers != "" {
		cfg.brokers = strings.Split(*brokers, ",")
	}
	if err := run(context.Background(), in, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

type config struct {
	brokers    []string
	stateDir   string
	partitions int32
	logger     *slog.Logger
}

// Words splits a line on every character that is not a Unicode letter or
// digit and lower-cases the pieces; empty pieces are dropped.
func Words(line string) []string {
	return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// Topology reads lines from input and writes the running count of every
// word to output.
func Topology(input, output string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{input})
	words := topology.FlatMapValues(lines, func(_, line string) []string { return Words(line) })
	counts := topology.GroupBy(words, func(_, word string) string { return word }).
		Count(topology.Materialized("counts"))
	counts.ToStream().To(output)
	return b.Build()
}

func run(ctx context.Context, in io.Reader, out io.Writer, cfg config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.stateDir == "" {
		dir, err := os.MkdirTemp("", "riffle-wordcount-")
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
	// A fresh application id and topics per run keep runs against a
	// long-lived cluster independent.
	runID := fmt.Sprintf("wordcount-%d", time.Now().UnixNano())
	input, output := runID+"-lines", runID+"-counts"

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{input, output} {
		resp, err := adm.CreateTopic(ctx, cfg.partitions, -1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	total, err := produceLines(ctx, cl, input, in)
	if err != nil {
		return err
	}

	top, err := Topology(input, output)
	if err != nil {
		return err
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

	consumer, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...), kgo.ConsumeTopics(output),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		app.Close()
		return fmt.Errorf("consumer: %w", err)
	}
	defer consumer.Close()
	counts, err := awaitCounts(ctx, consumer, total, runErr)
	app.Close()
	if err != nil {
		return err
	}
	if err := <-runErr; err != nil {
		return err
	}
	for _, w := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(out, "%s %d\n", w, counts[w])
	}
	return nil
}

// produceLines writes every line of in to topic and returns the number of
// words they hold.
func produceLines(ctx context.Context, cl *kgo.Client, topic string, in io.Reader) (int64, error) {
	var total int64
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		total += int64(len(Words(line)))
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(line)}, nil)
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read input: %w", err)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, fmt.Errorf("produce lines: %w", err)
	}
	return total, nil
}

// awaitCounts reads the output topic until the latest counts add up to
// total words.
func awaitCounts(ctx context.Context, cl *kgo.Client, total int64, runErr <-chan error) (map[string]int64, error) {
	counts := make(map[string]int64)
	var sum int64
	for sum < total {
		select {
		case err := <-runErr:
			if err == nil {
				err = errors.New("application stopped early")
			}
			return nil, err
		default:
		}
		pollCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var decodeErr error
		fetches.EachRecord(func(r *kgo.Record) {
			n, err := serde.Int64().Deserialize(r.Topic, r.Value)
			if err != nil {
				decodeErr = err
				return
			}
			sum += n - counts[string(r.Key)]
			counts[string(r.Key)] = n
		})
		if decodeErr != nil {
			return nil, decodeErr
		}
	}
	return counts, nil
}

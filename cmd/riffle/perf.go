package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/internal/perf"
)

const perfUsage = `Usage: riffle perf <produce|consume|e2e> [flags]

  produce  write records and report acknowledged throughput (like kafka-producer-perf-test)
  consume  read a topic from the start and report throughput (like kafka-consumer-perf-test)
  e2e      produce timestamped records at --rate and consume them, reporting
           latency percentiles from produce to consume

Run "riffle perf <mode> -h" for its flags.`

func runPerf(ctx context.Context, args []string) error {
	fi, err := os.Stdout.Stat()
	terminal := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return perfCmd(ctx, args, os.Stdout, os.Stderr, terminal)
}

// perfCmd runs one perf mode. When terminal is set it rewrites a progress
// line on stdout once a second; it always ends with a summary line, or a
// JSON object with --json.
func perfCmd(ctx context.Context, args []string, stdout, stderr io.Writer, terminal bool) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, perfUsage)
		if len(args) == 0 {
			return errors.New("perf: missing mode")
		}
		return nil
	}
	run := map[string]func(context.Context, ...perf.Opt) (perf.Result, error){
		"produce": perf.Produce,
		"consume": perf.Consume,
		"e2e":     perf.EndToEnd,
	}[args[0]]
	if run == nil {
		fmt.Fprintln(stderr, perfUsage)
		return fmt.Errorf("perf: unknown mode %q", args[0])
	}

	fs := flag.NewFlagSet("riffle perf "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := brokersFlag(fs)
	topic := fs.String("topic", "riffle-perf", "topic to load")
	records := fs.Int64("records", 0, "records to produce or consume (default 1000000 for produce and e2e, every record present for consume; 0 with --duration: no count limit)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no time limit)")
	recordSize := fs.Int("record-size", 1024, "bytes per record value")
	partitions := fs.Int("partitions", 3, "partitions of the topic if produce or e2e creates it")
	acks := fs.String("acks", "all", "acks: all, 1 or 0")
	compression := fs.String("compression", "none", "compression.type: none, gzip, snappy, lz4 or zstd")
	rate := fs.Float64("rate", 0, "target records per second (0: unlimited)")
	linger := fs.Duration("linger", 10*time.Millisecond, "producer linger before sending a batch")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("perf %s: unexpected argument %q", args[0], fs.Arg(0))
	}
	a, err := perf.ParseAcks(*acks)
	if err != nil {
		return fmt.Errorf("perf %s: --acks: %w", args[0], err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	opts := []perf.Opt{
		perf.Brokers(splitBrokers(*brokers)...),
		perf.Topic(*topic),
		perf.Duration(*duration),
		perf.RecordSize(*recordSize),
		perf.Partitions(int32(*partitions)),
		perf.WithAcks(a),
		perf.Compression(*compression),
		perf.Rate(*rate),
		perf.Linger(*linger),
	}
	if set["records"] || set["duration"] {
		opts = append(opts, perf.Records(*records))
	}
	var mu sync.Mutex // orders progress lines before the summary
	live := terminal && !*asJSON
	if live {
		opts = append(opts, perf.OnProgress(func(p perf.Progress) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stdout, "\r\x1b[K%s", p)
		}))
	}

	res, runErr := run(ctx, opts...)
	mu.Lock()
	defer mu.Unlock()
	if live {
		fmt.Fprint(stdout, "\r\x1b[K")
	}
	if runErr != nil && res.Records == 0 {
		return runErr
	}
	if *asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("perf %s: encode summary: %w", args[0], err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintln(stdout, res)
	}
	return runErr
}

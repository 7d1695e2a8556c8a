package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/internal/perf"
)

// defaultPerfRecords is how many records produce and e2e runs send
// unless --records or --duration says otherwise (internal/perf's default).
const defaultPerfRecords = 1_000_000

func perfCmds() *cmdSpec {
	leaf := func(mode, summary string, about []string, example string, run func(context.Context, ...perf.Opt) (perf.Result, error)) *cmdSpec {
		return &cmdSpec{name: mode, summary: summary, synopsis: "[flags]", about: about, examples: []string{example},
			setup: func(fs *flag.FlagSet) runFunc { return perfFlags(fs, mode, run) }}
	}
	onTTY := "On a terminal a progress bar is redrawn once a second; the run ends with a summary line, or a JSON object with --output json."
	return &cmdSpec{
		name:     "perf",
		summary:  "measure produce, consume and end-to-end throughput and latency",
		synopsis: "<produce|consume|e2e> [flags]",
		subs: []*cmdSpec{
			leaf("produce", "write records and report acknowledged throughput, like kafka-producer-perf-test",
				[]string{"Creates the topic if needed and produces --records records of --record-size bytes.", onTTY},
				"riffle perf produce --records 1000000 --record-size 1024 --acks all", perf.Produce),
			leaf("consume", "read a topic from the start and report throughput, like kafka-consumer-perf-test",
				[]string{"Reads every record present (or --records) from the start of the topic.", onTTY},
				"riffle perf consume --topic riffle-perf", perf.Consume),
			leaf("e2e", "produce timestamped records at --rate and report latency from produce to consume",
				[]string{"Produces records at --rate while consuming them, and reports latency percentiles.", onTTY},
				"riffle perf e2e --rate 10000 --duration 10s", perf.EndToEnd),
		},
	}
}

func perfFlags(fs *flag.FlagSet, mode string, run func(context.Context, ...perf.Opt) (perf.Result, error)) runFunc {
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
	return func(ctx context.Context, o *output, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("perf %s: unexpected argument %q", mode, args[0])
		}
		a, err := perf.ParseAcks(*acks)
		if err != nil {
			return fmt.Errorf("perf %s: --acks: %w", mode, err)
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
		target := int64(0)
		switch {
		case set["records"] || set["duration"]:
			opts = append(opts, perf.Records(*records))
			target = *records
		case mode != "consume":
			target = defaultPerfRecords
		}
		var mu sync.Mutex // orders progress lines before the summary
		live := o.tty && !o.json
		if live {
			opts = append(opts, perf.OnProgress(func(p perf.Progress) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintf(o.stdout, "\r\x1b[K%s", progressLine(p, target, *duration, o.width))
			}))
		}

		res, runErr := run(ctx, opts...)
		mu.Lock()
		defer mu.Unlock()
		if live {
			fmt.Fprint(o.stdout, "\r\x1b[K")
		}
		if runErr != nil && res.Records == 0 {
			return runErr
		}
		if o.json {
			if err := o.emit(res); err != nil {
				return fmt.Errorf("perf %s: %w", mode, err)
			}
		} else {
			fmt.Fprintln(o.stdout, res)
		}
		return runErr
	}
}

// progressLine draws a run's progress: a bar of how far it is towards
// its record target or its duration, whichever is nearer, when it has
// one, then the figures, all cut to width.
func progressLine(p perf.Progress, target int64, duration time.Duration, width int) string {
	done := -1.0
	if target > 0 {
		done = float64(p.Records) / float64(target)
	}
	if duration > 0 {
		done = max(done, p.Elapsed.Seconds()/duration.Seconds())
	}
	line := p.String()
	if done >= 0 {
		const bar = 20
		filled := int(min(done, 1) * bar)
		line = fmt.Sprintf("[%s%s] %3.0f%% %s", strings.Repeat("#", filled), strings.Repeat(".", bar-filled), min(done, 1)*100, line)
	}
	if width > 0 {
		return cut(line, width-1)
	}
	return line
}

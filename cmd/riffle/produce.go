package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/internal/perf"
)

// produceChunk is how many records produce sends before it waits for
// their acknowledgements, bounding what it holds in memory.
const produceChunk = 1000

func produceCmd() *cmdSpec {
	return &cmdSpec{
		name:     "produce",
		summary:  "write records from stdin or a file to a topic, like kcat -P",
		synopsis: "[flags] topic",
		about: []string{
			"Reads records from stdin (or --file), one per line (or per -D delimiter), and produces them to the topic. " +
				"With -K each record is split at the first key delimiter into key and value; a record without the delimiter " +
				"has a null key. -H adds headers to every record. Records go to -p's partition, or else keyed records to " +
				"the partition of the murmur2 hash of their key (the Java client's default partitioner) and unkeyed ones " +
				"round-robin.",
			"With --input json every line is one JSON object, as riffle consume --output json prints them: key, value, " +
				"headers ([{\"key\",\"value\"}]), partition and timestamp (Unix ms), all optional; bytes that are not UTF-8 " +
				"go in key_b64 and value_b64, and in a header's key_b64 and value_b64. topic and offset are ignored.",
			"produce waits for every record's acknowledgement and exits non-zero if any failed. With --output json it " +
				"prints the partition and offset of each record, one JSON object per line, in input order. " +
				"The topic is created if the broker auto-creates topics.",
		},
		examples: []string{
			"echo 'user1:hello' | riffle produce greetings -K :",
			"riffle produce orders --file orders.txt -H source=import -p 0",
			"riffle consume orders -e --output json | riffle produce orders-copy --input json",
		},
		setup: produceFlags,
	}
}

func produceFlags(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	keyDelim := fs.String("K", "", "key delimiter: each record is key<delim>value (escapes such as \\t allowed)")
	delim := fs.String("D", `\n`, "record delimiter of the input")
	var headers listFlag
	fs.Var(&headers, "H", "header `key=value` added to every record (repeatable)")
	partition := fs.Int("p", -1, "partition to produce to (-1: by key, else round-robin)")
	file := fs.String("file", "-", "file to read records from (-: stdin)")
	input := fs.String("input", "text", "input format: text (delimited records) or json (one JSON record per line)")
	nullEmpty := fs.Bool("Z", false, "send an empty value (or key, with -K) as null: a tombstone on compacted topics")
	acks := fs.String("acks", "all", "acks: all, 1 or 0")
	compression := fs.String("compression", "none", "compression.type: none, gzip, snappy, lz4 or zstd")
	linger := fs.Duration("linger", 5*time.Millisecond, "producer linger before sending a batch")
	return func(ctx context.Context, o *output, args []string) error {
		if len(args) != 1 {
			return errors.New("produce: name exactly one topic")
		}
		a, err := perf.ParseAcks(*acks)
		if err != nil {
			return fmt.Errorf("produce: --acks: %w", err)
		}
		codec, err := perf.Codec(*compression)
		if err != nil {
			return fmt.Errorf("produce: --compression: %w", err)
		}
		p := producer{topic: args[0], partition: int32(*partition), nullEmpty: *nullEmpty, json: *input == "json"}
		if *input != "text" && *input != "json" {
			return fmt.Errorf("produce: --input must be text or json, not %q", *input)
		}
		if p.keyDelim, err = unescape(*keyDelim); err != nil {
			return fmt.Errorf("produce: -K: %w", err)
		}
		if p.delim, err = unescape(*delim); err != nil || p.delim == "" {
			return fmt.Errorf("produce: -D must be a non-empty delimiter: %v", err)
		}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, "=")
			if !ok || k == "" {
				return fmt.Errorf("produce: -H %q is not key=value", h)
			}
			p.headers = append(p.headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		in := o.stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return fmt.Errorf("produce: %w", err)
			}
			defer f.Close()
			in = f
		}
		addrs := splitBrokers(*brokers)
		if len(addrs) == 0 {
			return errors.New("produce: --brokers is empty")
		}
		opts := append([]kgo.Opt{
			kgo.SeedBrokers(addrs...),
			kgo.DefaultProduceTopic(p.topic),
			kgo.AllowAutoTopicCreation(),
			kgo.ProducerBatchCompression(codec),
			kgo.ProducerLinger(*linger),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
		}, a.ProducerOpts()...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return fmt.Errorf("produce: %w", err)
		}
		defer cl.Close()
		if p.partitions, err = partitionCount(ctx, cl, p.topic); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
		if p.partition >= p.partitions {
			return fmt.Errorf("produce: -p %d: topic %s has %d partitions", p.partition, p.topic, p.partitions)
		}
		return p.run(ctx, o, cl, in)
	}
}

// partitionCount asks the cluster how many partitions topic has, letting
// the broker create it, and waits briefly for a new topic's leaders.
func partitionCount(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	for attempt := 0; ; attempt++ {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics, req.AllowAutoTopicCreation = append(req.Topics, rt), true
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return 0, fmt.Errorf("metadata of %s: %w", topic, err)
		}
		if len(resp.Topics) != 1 {
			return 0, fmt.Errorf("metadata of %s: %d topics in the answer", topic, len(resp.Topics))
		}
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
		if err == nil && len(resp.Topics[0].Partitions) > 0 {
			return int32(len(resp.Topics[0].Partitions)), nil
		}
		if err == nil || (kerr.IsRetriable(err) && !errors.Is(err, kerr.UnknownTopicOrPartition)) {
			if attempt < 20 {
				select {
				case <-ctx.Done():
					return 0, ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
		}
		if err == nil {
			err = errors.New("no partitions")
		}
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
}

// producer turns input into records of one topic.
type producer struct {
	topic      string
	partition  int32 // -1: choose
	partitions int32
	keyDelim   string
	delim      string
	headers    []kgo.RecordHeader
	nullEmpty  bool
	json       bool
	// next is the partition of the next unkeyed record.
	next int32
	// hash places keyed records as the Java client does.
	hash kgo.TopicPartitioner
}

// record parses one input record.
func (p *producer) record(data []byte) (*kgo.Record, error) {
	r := &kgo.Record{Topic: p.topic, Partition: -1}
	if p.json {
		if err := parseJSONRecord(data, r); err != nil {
			return nil, err
		}
	} else {
		value := data
		if p.keyDelim != "" {
			if k, v, ok := bytes.Cut(data, []byte(p.keyDelim)); ok {
				r.Key, value = bytes.Clone(k), v
				if p.nullEmpty && len(r.Key) == 0 {
					r.Key = nil
				}
			}
		}
		r.Value = bytes.Clone(value)
		if p.nullEmpty && len(r.Value) == 0 {
			r.Value = nil
		}
	}
	r.Headers = append(r.Headers, p.headers...)
	switch {
	case p.partition >= 0:
		r.Partition = p.partition
	case r.Partition >= p.partitions:
		return nil, fmt.Errorf("partition %d: topic %s has %d partitions", r.Partition, p.topic, p.partitions)
	case r.Partition >= 0:
	case r.Key != nil:
		if p.hash == nil {
			p.hash = kgo.StickyKeyPartitioner(nil).ForTopic(p.topic)
		}
		r.Partition = int32(p.hash.Partition(r, int(p.partitions)))
	default:
		r.Partition = p.next
		p.next = (p.next + 1) % p.partitions
	}
	return r, nil
}

// run reads every input record and produces it, a chunk at a time.
func (p *producer) run(ctx context.Context, o *output, cl *kgo.Client, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	sc.Split(splitAt([]byte(p.delim)))
	var (
		chunk          []*kgo.Record
		lines          []int
		line, produced int
		failed         int
	)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		results := cl.ProduceSync(ctx, chunk...)
		var out []byte
		for i, res := range results {
			if res.Err != nil {
				failed++
				fmt.Fprintf(o.stderr, "produce: record %d: %v\n", lines[i], res.Err)
				continue
			}
			produced++
			if o.json {
				out = fmt.Appendf(out, `{"record":%d,"partition":%d,"offset":%d}`+"\n", lines[i], res.Record.Partition, res.Record.Offset)
			}
		}
		chunk, lines = chunk[:0], lines[:0]
		if _, err := o.stdout.Write(out); err != nil {
			return err
		}
		return ctx.Err()
	}
	for sc.Scan() {
		line++
		if p.json && len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		r, err := p.record(sc.Bytes())
		if err != nil {
			failed++
			fmt.Fprintf(o.stderr, "produce: record %d: %v\n", line, err)
			continue
		}
		chunk, lines = append(chunk, r), append(lines, line)
		if len(chunk) == produceChunk {
			if err := flush(); err != nil {
				return fmt.Errorf("produce: %w", err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("produce: read input after record %d: %w", line, err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("produce: %d of %d records failed", failed, failed+produced)
	}
	if !o.json {
		fmt.Fprintf(o.stderr, "produced %d records to %s\n", produced, p.topic)
	}
	return nil
}

// splitAt is a bufio.SplitFunc splitting at delim; a last record without
// a trailing delimiter counts, an empty input has none.
func splitAt(delim []byte) bufio.SplitFunc {
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.Index(data, delim); i >= 0 {
			return i + len(delim), data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}

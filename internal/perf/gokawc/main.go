// Command gokawc is goka's side of the word count benchmark in
// internal/perf (streams_compare_test.go): the word count of
// examples/wordcount written as a goka processor, run until SIGTERM.
//
// Usage:
//
//	gokawc <broker> <input> <output> <group> <state dir> <commit interval ms>
//
// One processor of group <group>: its Input edge splits each line of the
// input topic into words (lower-cased, split on every character that is
// not a letter or digit, as examples/wordcount does) and sends each word to
// its own key through the group's loopback topic (<group>-loop, goka's
// repartitioning); its Loop edge adds one to the word's count in the group
// table (Persist: the changelog topic <group>-table, stored on disk in
// goka's default LevelDB storage under <state dir>) and emits the new
// count to the output topic as an 8-byte big-endian int64. The input is
// read from the earliest offset, producers wait for acks from all in-sync
// replicas, and sarama commits the offsets goka marks (after everything a
// message produced was acknowledged: at-least-once) every <commit interval
// ms>. Everything else is goka's and sarama's default configuration.
//
// This is a module of its own so that the Riffle module does not depend on
// goka: the benchmark builds it with go build.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

// count is the codec of counts: an 8-byte big-endian int64, as Riffle
// Streams and Kafka Streams write them.
type count struct{}

func (count) Encode(v any) ([]byte, error) {
	n, ok := v.(int64)
	if !ok {
		return nil, fmt.Errorf("count codec: got %T, want int64", v)
	}
	return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
}

func (count) Decode(b []byte) (any, error) {
	if len(b) != 8 {
		return nil, fmt.Errorf("count codec: %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func words(line string) []string {
	return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		log.Fatal(err)
	}
}

func run(args []string) error {
	if len(args) != 6 {
		return errors.New("usage: gokawc <broker> <input> <output> <group> <state dir> <commit interval ms>")
	}
	brokers := []string{args[0]}
	input, output, group, stateDir := goka.Stream(args[1]), goka.Stream(args[2]), goka.Group(args[3]), args[4]
	commitMs, err := strconv.Atoi(args[5])
	if err != nil {
		return fmt.Errorf("commit interval %q: %w", args[5], err)
	}

	cfg := goka.DefaultConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = time.Duration(commitMs) * time.Millisecond
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	goka.ReplaceGlobalConfig(cfg)
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1

	g := goka.DefineGroup(group,
		goka.Input(input, new(codec.String), func(ctx goka.Context, msg any) {
			for _, w := range words(msg.(string)) {
				ctx.Loopback(w, w)
			}
		}),
		goka.Loop(new(codec.String), func(ctx goka.Context, _ any) {
			var n int64
			if v := ctx.Value(); v != nil {
				n = v.(int64)
			}
			n++
			ctx.SetValue(n)
			ctx.Emit(output, ctx.Key(), n)
		}),
		goka.Persist(count{}),
		goka.Output(output, count{}),
	)
	p, err := goka.NewProcessor(brokers, g,
		goka.WithStorageBuilder(storage.DefaultBuilder(stateDir)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithTopicManagerConfig(tmc)))
	if err != nil {
		return fmt.Errorf("goka processor: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("goka processor: %w", err)
	}
	return nil
}

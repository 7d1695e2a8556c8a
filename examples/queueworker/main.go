// Command queueworker runs a pool of inference workers over a Kafka topic
// used as a queue, with a share group (KIP-932).
//
//	go run ./examples/queueworker                      # embedded Riffle broker
//	go run ./examples/queueworker -brokers host:port   # any Kafka 4.1+ cluster
//
// A producer writes inference jobs to a one-partition topic; a pool of
// share consumers, more of them than the topic has partitions, takes the
// jobs one by one. Each job goes to one worker at a time. A worker that
// hits a transient failure releases the job, and the broker hands it to a
// worker again with its delivery count up; a job that can never succeed
// is rejected and archived. Without -brokers the program starts Riffle's
// broker in-process, so the one binary is broker, producer and workers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/broker"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated host:port of an external cluster (default: start an embedded Riffle broker)")
	jobs := flag.Int("jobs", 200, "inference jobs to produce")
	workers := flag.Int("workers", 8, "share-group workers")
	work := flag.Duration("work", 5*time.Millisecond, "time one inference takes")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := config{
		jobs: *jobs, workers: *workers, work: *work,
		logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if *brokers != "" {
		cfg.brokers = strings.Split(*brokers, ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "queueworker:", err)
		os.Exit(1)
	}
}

type config struct {
	brokers []string
	jobs    int
	workers int
	work    time.Duration
	logger  *slog.Logger
}

// Job outcomes a worker reports for one delivery.
const (
	outcomeDone      = "done"
	outcomeRetry     = "retry"     // transient failure: release for another try
	outcomeCorrupted = "corrupted" // never succeeds: reject
)

// infer stands in for model inference on one job. Every 10th job fails
// once (a transient error such as a busy GPU), and every job whose image
// is "corrupt" always fails.
func infer(job string, delivery int32, work time.Duration) string {
	time.Sleep(work)
	id, image, _ := strings.Cut(job, " ")
	switch n, _ := strconv.Atoi(strings.TrimPrefix(id, "job-")); {
	case image == "image=corrupt":
		return outcomeCorrupted
	case n%10 == 0 && delivery == 1:
		return outcomeRetry
	}
	return outcomeDone
}

// stats counts what the workers did.
type stats struct {
	mu        sync.Mutex
	done      map[string]int // job -> times completed
	rejected  map[string]bool
	retries   int
	perWorker []int
}

func (s *stats) finished() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done) + len(s.rejected)
}

func run(ctx context.Context, out io.Writer, cfg config) error {
	if len(cfg.brokers) == 0 {
		dir, err := os.MkdirTemp("", "riffle-queueworker-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir), broker.Logger(cfg.logger))
		if err != nil {
			return fmt.Errorf("create broker: %w", err)
		}
		if err := b.Start(ctx); err != nil {
			return fmt.Errorf("start broker: %w", err)
		}
		defer b.Close(context.WithoutCancel(ctx))
		cfg.brokers = []string{b.Addr()}
	}
	runID := fmt.Sprintf("inference-%d", time.Now().UnixNano())
	topic, group := runID+"-jobs", runID+"-workers"

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	if err := setup(ctx, cl, topic, group); err != nil {
		return err
	}
	var recs []*kgo.Record
	for i := range cfg.jobs {
		image := fmt.Sprintf("image=s3://photos/%05d.jpg", i)
		if i%50 == 49 {
			image = "image=corrupt"
		}
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "job-%d %s", i, image)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce jobs: %w", err)
	}
	fmt.Fprintf(out, "produced %d inference jobs to %s\n", cfg.jobs, topic)

	st := &stats{done: map[string]int{}, rejected: map[string]bool{}, perWorker: make([]int, cfg.workers)}
	start := time.Now()
	var wg sync.WaitGroup
	var werr atomic.Pointer[error]
	for w := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := worker(ctx, cfg, topic, group, w, st); err != nil {
				werr.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if p := werr.Load(); p != nil {
		return *p
	}
	elapsed := time.Since(start)
	fmt.Fprintf(out, "%d jobs done, %d rejected, %d retried, in %v (%.0f jobs/s with %d workers)\n",
		len(st.done), len(st.rejected), st.retries, elapsed.Round(time.Millisecond), float64(cfg.jobs)/elapsed.Seconds(), cfg.workers)
	for w, n := range st.perWorker {
		fmt.Fprintf(out, "worker %d: %d jobs\n", w, n)
	}
	for job, n := range st.done {
		if n != 1 {
			return fmt.Errorf("%s completed %d times", job, n)
		}
	}
	return nil
}

// setup creates the one-partition jobs topic and makes the share group
// start at its beginning (share.auto.offset.reset defaults to latest).
func setup(ctx context.Context, cl *kgo.Client, topic, group string) error {
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = "share.auto.offset.reset", kmsg.StringPtr("earliest")
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	cresp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("configure share group %s: %w", group, err)
	}
	for _, r := range cresp.Resources {
		if r.ErrorCode != 0 {
			return fmt.Errorf("configure share group %s: error code %d", group, r.ErrorCode)
		}
	}
	return nil
}

// worker takes jobs from the share group until every job is finished.
func worker(ctx context.Context, cfg config, topic, group string, id int, st *stats) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...), kgo.ShareGroup(group), kgo.ConsumeTopics(topic),
		kgo.ShareMaxRecords(4), kgo.FetchMaxWait(250*time.Millisecond), kgo.ClientID(fmt.Sprintf("worker-%d", id)))
	if err != nil {
		return fmt.Errorf("worker %d: %w", id, err)
	}
	defer cl.Close()
	for st.finished() < cfg.jobs {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("worker %d: %w", id, ctx.Err())
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				cfg.logger.Warn("fetch", "worker", id, "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			job := string(r.Value)
			outcome := infer(job, r.DeliveryCount(), cfg.work)
			st.mu.Lock()
			defer st.mu.Unlock()
			switch outcome {
			case outcomeRetry:
				r.Ack(kgo.AckRelease)
				st.retries++
			case outcomeCorrupted:
				r.Ack(kgo.AckReject)
				st.rejected[job] = true
			default:
				r.Ack(kgo.AckAccept)
				st.done[job]++
				st.perWorker[id]++
			}
		})
	}
	if err := cl.FlushAcks(ctx); err != nil {
		return fmt.Errorf("worker %d: flush acks: %w", id, err)
	}
	return nil
}

// Command pageviews counts page views per region in time windows with a
// Riffle Streams topology that joins a stream with a table and a global
// table, and prints the final count of every closed window.
//
//	go run ./examples/pageviews -input FILE [-window 1m] [-grace 10s] [-brokers host:port]
//
// Each input line is one of
//
//	region <region-id> <name>     a row of the regions global table
//	user <user> <region-id>       a row of the users table
//	view <epoch-ms> <user> <page> a page view
//
// The region and user rows are produced first, keyed by region id and user,
// to a compacted regions topic and a compacted one-partition users topic,
// with timestamp 0; once the application has loaded them the views are
// produced in file order to a one-partition views topic, keyed by user,
// each record's timestamp set to its epoch-ms. The topology looks up each
// view's user in the users table (a left join: a view by an unknown user
// has no region), looks the user's region up in the regions global table
// (a left join again: a view without a known region counts for region
// "unknown"), re-keys the views by region name and counts them per region
// in tumbling windows of -window with -grace, suppressed until each window
// closes (stream time reaching its end plus the grace), so every window is
// emitted once, with its final count. Once every view is processed the
// program prints one "<window-start-ms> <region> <count>" line per emitted
// window, sorted by window start, then region (byte order). Windows still
// open when the input ends have no final result and are not printed.
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
		fmt.Fprintln(os.Stderr, "pageviews:", err)
		os.Exit(2)
	}
	f, err := os.Open(input)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pageviews:", err)
		os.Exit(1)
	}
	defer f.Close()
	if err := run(context.Background(), f, os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pageviews:", err)
		os.Exit(1)
	}
}

// parseArgs reads the command line into a config and the input file name.
func parseArgs(args []string) (config, string, error) {
	fs := flag.NewFlagSet("pageviews", flag.ContinueOnError)
	input := fs.String("input", "", "file of region, user and view lines (required)")
	window := fs.Duration("window", time.Minute, "window size")
	grace := fs.Duration("grace", 10*time.Second, "grace period after a window's end during which late views are still counted")
	brokers := fs.String("brokers", "", "comma-separated host:port of an external cluster (default: start an embedded Riffle broker)")
	stateDir := fs.String("state", "", "state directory (default: a fresh temporary directory)")
	verbose := fs.Bool("v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		return config{}, "", err
	}
	if *input == "" {
		return config{}, "", errors.New("-input is required")
	}
	if *window <= 0 || *grace < 0 {
		return config{}, "", fmt.Errorf("-window must be positive and -grace not negative, got %v and %v", *window, *grace)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg := config{
		windows:  topology.TumblingWindows(*window).WithGrace(*grace),
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

// input is the parsed input file: the rows of both tables and the views.
type input struct {
	regions, users []row
	views          []view
}

// row is a table row.
type row struct{ key, value string }

// view is one page view.
type view struct {
	ts         int64
	user, page string
}

// parse reads the input lines; blank lines are skipped.
func parse(r io.Reader) (input, error) {
	var in input
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch {
		case fields[0] == "region" && len(fields) == 3:
			in.regions = append(in.regions, row{fields[1], fields[2]})
		case fields[0] == "user" && len(fields) == 3:
			in.users = append(in.users, row{fields[1], fields[2]})
		case fields[0] == "view" && len(fields) == 4:
			ts, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || ts < 0 {
				return input{}, fmt.Errorf("line %d: %q is not a non-negative epoch-ms timestamp", n, fields[1])
			}
			in.views = append(in.views, view{ts: ts, user: fields[2], page: fields[3]})
		default:
			return input{}, fmt.Errorf("line %d: want \"region <id> <name>\", \"user <user> <region-id>\" or \"view <epoch-ms> <user> <page>\", got %q", n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return input{}, fmt.Errorf("read input: %w", err)
	}
	return in, nil
}

// Topology joins the views (keyed by user, valued by page) with the users
// table (user to region id) and the regions global table (region id to
// name), counts them per region name in windows w and writes each window's
// final count to output.
func Topology(views, users, regions, output string, w topology.TimeWindows) (*topology.Topology, error) {
	b := topology.NewBuilder()
	userRegions := topology.TableFrom[string, string](b, users, topology.Materialized("users"))
	regionNames := topology.GlobalTableFrom[string, string](b, regions, topology.Materialized("regions"))
	pageViews := topology.FromTopics[string, string](b, []string{views})
	// Each view's value becomes its user's region id ("" if the user is
	// unknown), then the region's name.
	regionIDs := topology.LeftJoin(pageViews, userRegions, func(_, region string, found bool) string {
		if !found {
			return ""
		}
		return region
	})
	regionOf := func(_, id string) string { return id }
	named := topology.LeftJoinGlobal(regionIDs, regionNames, regionOf, func(_, name string, found bool) string {
		if !found {
			return "unknown"
		}
		return name
	})
	byRegion := topology.GroupBy(named, func(_, region string) string { return region }, topology.Named("views-by-region"))
	topology.WindowedBy(byRegion, w).
		Count(topology.Materialized("region-views")).
		SuppressUntilWindowCloses(topology.UnboundedBuffer()).
		ToStream().To(output)
	return b.Build()
}

// window is one line of the result.
type window struct {
	start  int64
	region string
	count  int64
}

func run(ctx context.Context, r io.Reader, out io.Writer, cfg config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, err := parse(r)
	if err != nil {
		return err
	}
	// A fresh application id and topics per run keep runs against a
	// long-lived cluster independent.
	runID := fmt.Sprintf("pageviews-%d", time.Now().UnixNano())
	views, users, regions, output := runID+"-views", runID+"-users", runID+"-regions", runID+"-output"
	top, err := Topology(views, users, regions, output, cfg.windows)
	if err != nil {
		return err
	}
	if cfg.stateDir == "" {
		dir, err := os.MkdirTemp("", "riffle-pageviews-")
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
	if err := createTopics(ctx, kadm.NewClient(cl), views, users, regions, output); err != nil {
		return err
	}
	for _, t := range []struct {
		topic string
		rows  []row
	}{{regions, in.regions}, {users, in.users}} {
		for _, r := range t.rows {
			cl.Produce(ctx, &kgo.Record{Topic: t.topic, Key: []byte(r.key), Value: []byte(r.value), Timestamp: time.UnixMilli(0)}, nil)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce tables: %w", err)
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
	// The global table is loaded before processing starts; the users table
	// is read like a stream, so the views wait until it is: a view read
	// before its user's row would find no region.
	if err := awaitProcessed(ctx, app, int64(len(in.users)), runErr); err != nil {
		app.Close()
		return err
	}
	for _, v := range in.views {
		cl.Produce(ctx, &kgo.Record{Topic: views, Key: []byte(v.user), Value: []byte(v.page), Timestamp: time.UnixMilli(v.ts)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		app.Close()
		return fmt.Errorf("produce views: %w", err)
	}
	// Every view is processed twice: joined, then counted after the
	// repartition by region.
	if err := awaitProcessed(ctx, app, int64(len(in.users)+2*len(in.views)), runErr); err != nil {
		app.Close()
		return err
	}
	// Close commits: the stores are flushed and every result produced.
	app.Close()
	if err := <-runErr; err != nil {
		return err
	}
	windows, err := readResults(ctx, cl, cfg.brokers, output, cfg.windows.Size())
	if err != nil {
		return err
	}
	for _, w := range windows {
		fmt.Fprintf(out, "%d %s %d\n", w.start, w.region, w.count)
	}
	return nil
}

// createTopics creates the one-partition topics of a run; the tables'
// topics are compacted, as a table's source topic should be.
func createTopics(ctx context.Context, adm *kadm.Client, views, users, regions, output string) error {
	// The epoch-ms timestamps may lie anywhere in time: let the topics
	// accept them all.
	anyTime := func(compacted bool) map[string]*string {
		configs := map[string]*string{
			"message.timestamp.before.max.ms": kadm.StringPtr(strconv.FormatInt(math.MaxInt64, 10)),
			"message.timestamp.after.max.ms":  kadm.StringPtr(strconv.FormatInt(math.MaxInt64, 10)),
		}
		if compacted {
			configs["cleanup.policy"] = kadm.StringPtr("compact")
		}
		return configs
	}
	for _, t := range []struct {
		name      string
		compacted bool
	}{{views, false}, {users, true}, {regions, true}, {output, false}} {
		resp, err := adm.CreateTopic(ctx, 1, -1, anyTime(t.compacted), t.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t.name, err)
		}
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

// readResults reads topic up to its end and returns its windows, sorted by
// start, then region. Suppression emits each window once; a second result
// for a window is an error.
func readResults(ctx context.Context, cl *kgo.Client, brokers []string, topic string, size time.Duration) ([]window, error) {
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
	seen := make(map[topology.Windowed[string]]bool)
	var out []window
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
			if seen[w] {
				return nil, fmt.Errorf("window %d of %s emitted twice", w.Window.StartMs(), w.Key)
			}
			seen[w] = true
			out = append(out, window{start: w.Window.StartMs(), region: w.Key, count: n})
			next = r.Offset + 1
		}
	}
	slices.SortFunc(out, func(a, b window) int {
		return cmp.Or(cmp.Compare(a.start, b.start), bytes.Compare([]byte(a.region), []byte(b.region)))
	})
	return out, nil
}

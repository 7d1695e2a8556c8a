package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func consumeCmd() *cmdSpec {
	return &cmdSpec{
		name:     "consume",
		summary:  "print the records of topics, like kcat -C",
		synopsis: "[flags] topic...",
		about: []string{
			"Prints the records of the topics, one per line as -f formats them (default %v\\n, or %k<-K>%v\\n with -K), " +
				"or as JSON objects one per line with --output json. Verbs of -f: " + templateVerbs + ".",
			"-o picks where each partition starts: start (or beginning), end, an absolute offset N, -N (N records before " +
				"the end), +N (N records after the start), or @T (the first record at or after the time T, in Unix ms or " +
				"RFC 3339). Offsets outside the log are clamped to it.",
			"With -G the records are consumed as a member of the consumer group: partitions are assigned by the group, " +
				"each starts at the group's committed offset (or at -o where it has none) and the offsets of the records " +
				"printed are committed.",
			"consume runs until interrupted, until -c records are printed, or with -e until every partition is read up " +
				"to the end it had when the command started (with -G, every partition assigned to it). " +
				"--isolation read_committed reads only committed transactional records, and -e then stops at the last " +
				"stable offset.",
		},
		examples: []string{
			"riffle consume orders -o start -e",
			"riffle consume orders -K : -f '%t[%p]@%o %k:%v (%h)\\n' -c 10",
			"riffle consume orders -G billing --isolation read_committed",
			"riffle consume orders -o @2026-12-01T00:00:00Z -e --output json",
		},
		setup: consumeFlags,
	}
}

// consumeOpts are consume's parsed flags.
type consumeOpts struct {
	brokers   string
	offset    string
	group     string
	count     int64
	exitAtEnd bool
	format    string
	keyDelim  string
	isolation string
	parts     listFlag
}

func consumeFlags(fs *flag.FlagSet) runFunc {
	var c consumeOpts
	fs.StringVar(&c.brokers, "brokers", defaultBrokers, "comma-separated host:port list of brokers to bootstrap from")
	fs.StringVar(&c.offset, "o", "start", "where to start: start, end, N, -N (before the end), +N (after the start), @T (a time); with -G only where the group has no offset")
	fs.StringVar(&c.group, "G", "", "consume as a member of this consumer group, committing offsets")
	fs.Int64Var(&c.count, "c", 0, "exit after printing this many records (0: no limit)")
	fs.BoolVar(&c.exitAtEnd, "e", false, "exit once every partition is read to its end")
	fs.StringVar(&c.format, "f", "", "record format (default %v\\n; %k<delim>%v\\n with -K)")
	fs.StringVar(&c.keyDelim, "K", "", "print the key and this delimiter before the value (without -f)")
	fs.StringVar(&c.isolation, "isolation", "read_uncommitted", "isolation level: read_uncommitted or read_committed (Kafka's isolation.level)")
	fs.Var(&c.parts, "p", "only these `partitions` (repeatable, or comma-separated; not with -G)")
	return func(ctx context.Context, o *output, args []string) error {
		if len(args) == 0 {
			return errors.New("consume: name at least one topic")
		}
		return c.run(ctx, o, args)
	}
}

// startSpec is a parsed -o.
type startSpec struct {
	kind string // start, end, at, before-end, after-start, time
	n    int64
}

func parseStart(s string) (startSpec, error) {
	switch s {
	case "start", "beginning", "earliest", "oldest":
		return startSpec{kind: "start"}, nil
	case "end", "latest", "newest":
		return startSpec{kind: "end"}, nil
	}
	if t, ok := strings.CutPrefix(s, "@"); ok {
		ms, err := parseTimestamp(t)
		return startSpec{kind: "time", n: ms}, err
	}
	if t, ok := strings.CutPrefix(s, "s@"); ok {
		ms, err := parseTimestamp(t)
		return startSpec{kind: "time", n: ms}, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return startSpec{}, fmt.Errorf("%q is not start, end, N, -N, +N or @time", s)
	}
	switch {
	case strings.HasPrefix(s, "-"):
		return startSpec{kind: "before-end", n: -n}, nil
	case strings.HasPrefix(s, "+"):
		return startSpec{kind: "after-start", n: n}, nil
	}
	return startSpec{kind: "at", n: n}, nil
}

// kgoOffset is the spec as the group consumer's reset offset.
func (s startSpec) kgoOffset() kgo.Offset {
	switch s.kind {
	case "end":
		return kgo.NewOffset().AtEnd()
	case "at":
		return kgo.NewOffset().At(s.n)
	case "before-end":
		return kgo.NewOffset().AtEnd().Relative(-s.n)
	case "after-start":
		return kgo.NewOffset().AtStart().Relative(s.n)
	case "time":
		return kgo.NewOffset().AfterMilli(s.n)
	}
	return kgo.NewOffset().AtStart()
}

// bounds are where each partition's log starts and ends, and where
// consume starts in it.
type bounds struct {
	start, end, from int64
}

// resolve finds each partition's bounds and the offset spec starts at.
func resolve(ctx context.Context, adm *kadm.Client, spec startSpec, committed bool, topics []string) (map[string]map[int32]bounds, error) {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	listEnd := adm.ListEndOffsets
	if committed {
		listEnd = adm.ListCommittedOffsets
	}
	ends, err := listEnd(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	var atTime kadm.ListedOffsets
	if spec.kind == "time" {
		if atTime, err = adm.ListOffsetsAfterMilli(ctx, spec.n, topics...); err == nil {
			err = atTime.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("list offsets at %d: %w", spec.n, err)
		}
	}
	out := make(map[string]map[int32]bounds)
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(e.Topic, e.Partition)
		b := bounds{start: s.Offset, end: e.Offset}
		switch spec.kind {
		case "start":
			b.from = b.start
		case "end":
			b.from = b.end
		case "at":
			b.from = spec.n
		case "before-end":
			b.from = b.end - spec.n
		case "after-start":
			b.from = b.start + spec.n
		case "time":
			b.from = b.end
			if t, ok := atTime.Lookup(e.Topic, e.Partition); ok && t.Offset >= 0 {
				b.from = t.Offset
			}
		}
		b.from = min(max(b.from, b.start), b.end)
		if out[e.Topic] == nil {
			out[e.Topic] = make(map[int32]bounds)
		}
		out[e.Topic][e.Partition] = b
	})
	return out, nil
}

// consumer is one consume run's state.
type consumer struct {
	consumeOpts
	o       *output
	tmpl    template
	printed int64
	// bounds is where each partition ends, as of the start.
	bounds map[string]map[int32]bounds
	// mu guards pos, assigned and known, which the group's callbacks
	// change while records are printed.
	mu sync.Mutex
	// pos is the next offset to print of each partition.
	pos map[string]map[int32]int64
	// assigned is what the group assigned to this member.
	assigned map[string]map[int32]bool
	// known marks the assigned partitions whose position pos holds.
	known map[string]map[int32]bool
}

func (c *consumeOpts) run(ctx context.Context, o *output, topics []string) error {
	spec, err := parseStart(c.offset)
	if err != nil {
		return fmt.Errorf("consume: -o: %w", err)
	}
	delim, err := unescape(c.keyDelim)
	if err != nil {
		return fmt.Errorf("consume: -K: %w", err)
	}
	tmpl := template{{verb: 'v'}, {text: "\n"}}
	if delim != "" {
		tmpl = append(template{{verb: 'k'}, {text: delim}}, tmpl...)
	}
	if c.format != "" {
		if tmpl, err = parseTemplate(c.format); err != nil {
			return fmt.Errorf("consume: -f: %w", err)
		}
	}
	var isolation kgo.IsolationLevel
	switch c.isolation {
	case "read_uncommitted":
		isolation = kgo.ReadUncommitted()
	case "read_committed":
		isolation = kgo.ReadCommitted()
	default:
		return fmt.Errorf("consume: --isolation must be read_uncommitted or read_committed, not %q", c.isolation)
	}
	only := make(map[int32]bool)
	for _, p := range c.parts {
		for s := range strings.SplitSeq(p, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
			if err != nil || n < 0 {
				return fmt.Errorf("consume: -p %q is not a partition number", s)
			}
			only[int32(n)] = true
		}
	}
	if len(only) > 0 && c.group != "" {
		return errors.New("consume: -p and -G do not go together: the group assigns the partitions")
	}
	adm, admCl, err := newAdmin(c.brokers)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer admCl.Close()
	listed, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	for _, t := range topics {
		if d, ok := listed[t]; !ok || d.Err != nil {
			err := errors.New("missing from the broker's metadata")
			if ok {
				err = d.Err
			}
			return fmt.Errorf("consume: topic %s: %w", t, err)
		}
	}
	b, err := resolve(ctx, adm, spec, isolation == kgo.ReadCommitted(), topics)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	for p := range only {
		for _, t := range topics {
			if _, ok := b[t][p]; !ok {
				return fmt.Errorf("consume: -p %d: topic %s has no partition %d", p, t, p)
			}
		}
	}
	cs := &consumer{consumeOpts: *c, o: o, tmpl: tmpl, bounds: b,
		pos: make(map[string]map[int32]int64), assigned: make(map[string]map[int32]bool), known: make(map[string]map[int32]bool)}

	opts := []kgo.Opt{kgo.SeedBrokers(splitBrokers(c.brokers)...), kgo.FetchIsolationLevel(isolation)}
	if c.group != "" {
		opts = append(opts, kgo.ConsumerGroup(c.group), kgo.ConsumeTopics(topics...),
			kgo.ConsumeResetOffset(spec.kgoOffset()), kgo.AutoCommitMarks(),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { cs.assign(m, true) }),
			kgo.OnPartitionsRevoked(func(rctx context.Context, cl *kgo.Client, m map[string][]int32) {
				cs.assign(m, false)
				if err := cl.CommitMarkedOffsets(rctx); err != nil {
					fmt.Fprintf(o.stderr, "consume: commit: %v\n", err)
				}
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { cs.assign(m, false) }))
	} else {
		parts := make(map[string]map[int32]kgo.Offset)
		for t, ps := range b {
			for p, pb := range ps {
				if len(only) > 0 && !only[p] {
					delete(ps, p)
					continue
				}
				if parts[t] == nil {
					parts[t] = make(map[int32]kgo.Offset)
				}
				parts[t][p] = kgo.NewOffset().At(pb.from)
				cs.mu.Lock()
				cs.setPos(t, p, pb.from)
				cs.mu.Unlock()
			}
		}
		opts = append(opts, kgo.ConsumePartitions(parts))
		if c.exitAtEnd && cs.atEnd() {
			return nil
		}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer cl.Close()
	err = cs.poll(ctx, cl, adm)
	if c.group != "" {
		commitCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cerr := cl.CommitMarkedOffsets(commitCtx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("consume: commit: %w", cerr))
		}
	}
	return err
}

// assign records partitions assigned to or taken from the group member.
// A partition taken away forgets its position: another member may move it
// on before it comes back.
func (cs *consumer) assign(m map[string][]int32, add bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for t, ps := range m {
		if cs.assigned[t] == nil {
			cs.assigned[t] = make(map[int32]bool)
		}
		for _, p := range ps {
			if add {
				cs.assigned[t][p] = true
				continue
			}
			delete(cs.assigned[t], p)
			delete(cs.known[t], p)
			delete(cs.pos[t], p)
		}
	}
}

// setPos records the position of a partition. Hold mu.
func (cs *consumer) setPos(t string, p int32, at int64) {
	if cs.pos[t] == nil {
		cs.pos[t] = make(map[int32]int64)
	}
	cs.pos[t][p] = at
}

// atEnd reports whether every partition consumed is read up to the end
// it had at the start. A group member with nothing assigned is not.
func (cs *consumer) atEnd() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.group == "" {
		for t, ps := range cs.bounds {
			for p, b := range ps {
				if cs.pos[t][p] < b.end {
					return false
				}
			}
		}
		return true
	}
	n := 0
	for t, ps := range cs.assigned {
		for p := range ps {
			n++
			pos, ok := cs.pos[t][p]
			if !ok || pos < cs.bounds[t][p].end {
				return false
			}
		}
	}
	return n > 0
}

// learnCommitted sets the position of newly assigned partitions from the
// group's committed offsets, or where -o starts where there are none.
func (cs *consumer) learnCommitted(ctx context.Context, adm *kadm.Client) error {
	cs.mu.Lock()
	var fresh []string
	for t, ps := range cs.assigned {
		for p := range ps {
			if !cs.known[t][p] {
				fresh = append(fresh, t)
				break
			}
		}
	}
	cs.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	committed, err := adm.FetchOffsets(ctx, cs.group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return fmt.Errorf("fetch committed offsets of %s: %w", cs.group, err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for t, ps := range cs.assigned {
		for p := range ps {
			if cs.known[t][p] {
				continue
			}
			if cs.known[t] == nil {
				cs.known[t] = make(map[int32]bool)
			}
			cs.known[t][p] = true
			if _, ok := cs.pos[t][p]; ok {
				continue
			}
			at := cs.bounds[t][p].from
			if c, ok := committed.Lookup(t, p); ok && c.At >= 0 {
				at = c.At
			}
			cs.setPos(t, p, at)
		}
	}
	return nil
}

// endCheck is how often consume -e checks for the end while no records come.
const endCheck = 200 * time.Millisecond

// poll prints records until the count, the end with -e, or ctx's end.
func (cs *consumer) poll(ctx context.Context, cl *kgo.Client, adm *kadm.Client) error {
	var buf []byte
	for {
		if cs.exitAtEnd {
			if cs.group != "" {
				if err := cs.learnCommitted(ctx, adm); err != nil {
					return fmt.Errorf("consume: %w", err)
				}
			}
			if cs.atEnd() {
				return nil
			}
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if cs.exitAtEnd {
			pollCtx, cancel = context.WithTimeout(ctx, endCheck)
		}
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var fatal error
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			fmt.Fprintf(cs.o.stderr, "consume: %s[%d]: %v\n", t, p, err)
			if errors.Is(err, kgo.ErrClientClosed) {
				fatal = err
			}
		})
		if fatal != nil {
			return fmt.Errorf("consume: %w", fatal)
		}
		buf = buf[:0]
		done := false
		var marked []*kgo.Record
		cs.mu.Lock()
		fetches.EachRecord(func(r *kgo.Record) {
			if done {
				return
			}
			if cs.o.json {
				var err error
				if buf, err = appendJSON(buf, r); err != nil {
					fatal = err
				}
			} else {
				buf = cs.tmpl.appendRecord(buf, r)
			}
			cs.setPos(r.Topic, r.Partition, r.Offset+1)
			marked = append(marked, r)
			cs.printed++
			done = cs.count > 0 && cs.printed >= cs.count
		})
		cs.mu.Unlock()
		if fatal != nil {
			return fmt.Errorf("consume: %w", fatal)
		}
		if _, err := cs.o.stdout.Write(buf); err != nil {
			return fmt.Errorf("consume: %w", err)
		}
		if cs.group != "" {
			cl.MarkCommitRecords(marked...)
		}
		if done {
			return nil
		}
	}
}

package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func topicCmds() *cmdSpec {
	return &cmdSpec{
		name:     "topic",
		summary:  "create, list, describe, delete topics and alter their configs",
		synopsis: "<subcommand> [flags] [topic...]",
		subs: []*cmdSpec{
			{name: "create", summary: "create topics", synopsis: "[flags] topic...",
				about:    []string{"Creates each topic with --partitions, --replication-factor and --config overrides; a topic that fails is reported and the others are still created."},
				examples: []string{"riffle topic create orders --partitions 6 --config retention.ms=86400000"},
				setup:    topicCreate},
			{name: "list", summary: "list topics with their partition counts and replication factors", synopsis: "[flags]",
				examples: []string{"riffle topic list --internal", "riffle topic list --output json"},
				setup:    topicList},
			{name: "describe", summary: "show partitions, replicas, offsets, sizes and config overrides", synopsis: "[flags] [topic...]",
				about: []string{"Shows each topic (every topic if none is named) with its config overrides and, per partition, " +
					"its leader, replicas, in-sync replicas, log start and end offsets and size on disk (from DescribeLogDirs; " +
					"\"-\" where the cluster does not serve it).",
					"With --http the broker's HTTP address (riffle broker --http), a DIRTY column shows the share of each " +
						"compacted partition's log not yet cleaned, read from the riffle_log_dirty_ratio metric of /metrics."},
				examples: []string{"riffle topic describe orders", "riffle topic describe orders --http 127.0.0.1:8080 --output json"},
				setup:    topicDescribe},
			{name: "delete", summary: "delete topics", synopsis: "[flags] topic...",
				examples: []string{"riffle topic delete orders audit"},
				setup:    topicDelete},
			{name: "alter-config", summary: "set (--set k=v) or remove (--delete k) topic config overrides", synopsis: "[flags] topic...",
				examples: []string{"riffle topic alter-config orders --set retention.ms=3600000 --delete segment.ms"},
				setup:    topicAlterConfig},
		},
	}
}

func topicCreate(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	partitions := fs.Int("partitions", -1, "partitions per topic (-1: the broker's num.partitions)")
	replication := fs.Int("replication-factor", -1, "replicas per partition (-1: the broker's default.replication.factor)")
	var configs listFlag
	fs.Var(&configs, "config", "topic config override `key=value` (repeatable)")
	return func(ctx context.Context, o *output, names []string) error {
		if len(names) == 0 {
			return errors.New("topic create: name at least one topic")
		}
		cfg, err := keyValues(configs)
		if err != nil {
			return fmt.Errorf("topic create: --config: %w", err)
		}
		adm, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("topic create: %w", err)
		}
		defer cl.Close()
		resp, err := adm.CreateTopics(ctx, int32(*partitions), int16(*replication), cfg, names...)
		if err != nil {
			return fmt.Errorf("topic create: %w", err)
		}
		t := outcomes{o: o, kind: "topic"}
		for _, name := range names {
			r, ok := resp[name]
			switch {
			case !ok:
				t.fail(name, errors.New("missing from the broker's response"), "")
			case r.Err != nil:
				t.fail(name, r.Err, r.ErrMessage)
			default:
				t.done(fmt.Sprintf("created topic %s (partitions %d, replication factor %d)", name, r.NumPartitions, r.ReplicationFactor),
					map[string]any{"topic": name, "id": topicID(r.ID), "partitions": r.NumPartitions, "replication_factor": r.ReplicationFactor})
			}
		}
		return t.result("create", len(names))
	}
}

func topicList(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	internal := fs.Bool("internal", false, "include internal topics such as __consumer_offsets")
	return func(ctx context.Context, o *output, names []string) error {
		if len(names) > 0 {
			return fmt.Errorf("topic list: unexpected argument %q", names[0])
		}
		adm, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("topic list: %w", err)
		}
		defer cl.Close()
		list := adm.ListTopics
		if *internal {
			list = adm.ListTopicsWithInternal
		}
		topics, err := list(ctx)
		if err != nil {
			return fmt.Errorf("topic list: %w", err)
		}
		t := outcomes{o: o, kind: "topic"}
		tab := newTable("TOPIC", "PARTITIONS", "REPLICATION-FACTOR")
		for _, name := range topics.Names() {
			d := topics[name]
			if d.Err != nil {
				t.fail(name, d.Err, "")
				continue
			}
			tab.row(name, len(d.Partitions), replicationFactor(d))
		}
		if err := o.print(tab); err != nil {
			return fmt.Errorf("topic list: %w", err)
		}
		if t.failed > 0 {
			return fmt.Errorf("topic list: %d of %d topics failed", t.failed, len(topics))
		}
		return nil
	}
}

// topicID spells a topic id as Kafka's tools do: URL-safe base64
// without padding.
func topicID(id kadm.TopicID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// replicationFactor is the replica count of the topic's first partition.
func replicationFactor(d kadm.TopicDetail) int {
	if p, ok := d.Partitions[0]; ok {
		return len(p.Replicas)
	}
	return 0
}

// describedTopic is a topic as describe shows it.
type describedTopic struct {
	Topic             string               `json:"topic"`
	ID                string               `json:"id"`
	ReplicationFactor int                  `json:"replication_factor"`
	Configs           map[string]string    `json:"configs"`
	Partitions        []describedPartition `json:"partitions"`
}

// describedPartition is one partition of a describedTopic. Size and
// Dirty are nil where they are not known.
type describedPartition struct {
	Partition int32    `json:"partition"`
	Leader    int32    `json:"leader"`
	Replicas  []int32  `json:"replicas"`
	ISR       []int32  `json:"isr"`
	Start     *int64   `json:"start_offset"`
	End       *int64   `json:"end_offset"`
	Size      *int64   `json:"size_bytes"`
	Dirty     *float64 `json:"dirty_ratio,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func topicDescribe(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	httpAddr := fs.String("http", "", "the broker's HTTP address (host:port of riffle broker --http), to show each partition's dirty ratio")
	return func(ctx context.Context, o *output, names []string) error {
		adm, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("topic describe: %w", err)
		}
		defer cl.Close()
		topics, err := adm.ListTopics(ctx, names...)
		if err != nil {
			return fmt.Errorf("topic describe: %w", err)
		}
		if len(names) == 0 {
			names = topics.Names()
		}
		t := outcomes{o: o, kind: "topic"}
		var found []string
		for _, name := range names {
			d, ok := topics[name]
			switch {
			case !ok:
				t.fail(name, errors.New("missing from the broker's metadata"), "")
			case d.Err != nil:
				t.fail(name, d.Err, "")
			default:
				found = append(found, name)
			}
		}
		if len(found) == 0 {
			return t.result("describe", len(names))
		}
		starts, err := adm.ListStartOffsets(ctx, found...)
		if err != nil {
			return fmt.Errorf("topic describe: start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, found...)
		if err != nil {
			return fmt.Errorf("topic describe: end offsets: %w", err)
		}
		configs, err := adm.DescribeTopicConfigs(ctx, found...)
		if err != nil {
			return fmt.Errorf("topic describe: configs: %w", err)
		}
		sizes := partitionSizes(ctx, adm, topics, found)
		var dirty map[string]map[int32]float64
		if *httpAddr != "" {
			if dirty, err = dirtyRatios(ctx, *httpAddr); err != nil {
				return fmt.Errorf("topic describe: %w", err)
			}
		}
		var described []describedTopic
		for _, name := range found {
			d := topics[name]
			dt := describedTopic{Topic: name, ID: topicID(d.ID), ReplicationFactor: replicationFactor(d)}
			if rc, err := configs.On(name, nil); err != nil {
				t.fail(name, fmt.Errorf("configs: %w", err), "")
			} else if rc.Err != nil {
				t.fail(name, fmt.Errorf("configs: %w", rc.Err), rc.ErrMessage)
			} else {
				dt.Configs = overrides(rc.Configs)
			}
			for _, p := range d.Partitions.Sorted() {
				dp := describedPartition{Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR,
					Start: listedOffset(starts, name, p.Partition), End: listedOffset(ends, name, p.Partition)}
				if p.Err != nil {
					dp.Error = p.Err.Error()
					t.fail(fmt.Sprintf("%s[%d]", name, p.Partition), p.Err, "")
				}
				if s, ok := sizes[name][p.Partition]; ok {
					dp.Size = &s
				}
				if r, ok := dirty[name][p.Partition]; ok {
					dp.Dirty = &r
				}
				dt.Partitions = append(dt.Partitions, dp)
			}
			described = append(described, dt)
		}
		if o.json {
			if err := o.emit(described); err != nil {
				return err
			}
		} else if err := writeTopics(o, described, dirty != nil); err != nil {
			return fmt.Errorf("topic describe: %w", err)
		}
		if t.failed > 0 {
			return fmt.Errorf("topic describe: %d of %d topics failed", t.failed, len(names))
		}
		return nil
	}
}

// writeTopics prints described topics as text.
func writeTopics(o *output, topics []describedTopic, withDirty bool) error {
	for i, dt := range topics {
		if i > 0 {
			fmt.Fprintln(o.stdout)
		}
		fmt.Fprintf(o.stdout, "%s %s  ID %s  PARTITIONS %d  REPLICATION-FACTOR %d\n", o.bold("TOPIC"), dt.Topic, dt.ID, len(dt.Partitions), dt.ReplicationFactor)
		if dt.Configs != nil {
			fmt.Fprintf(o.stdout, "CONFIGS %s\n", formatConfigs(dt.Configs))
		}
		headers := []string{"PARTITION", "LEADER", "REPLICAS", "ISR", "START", "END", "SIZE"}
		if withDirty {
			headers = append(headers, "DIRTY")
		}
		tab := newTable(headers...)
		for _, p := range dt.Partitions {
			cells := []any{p.Partition, p.Leader, p.Replicas, p.ISR, deref(p.Start), deref(p.End), nil}
			if p.Size != nil {
				cells[6] = formatBytes(*p.Size)
			}
			if withDirty {
				cells = append(cells, deref(p.Dirty))
			}
			tab.row(cells...)
		}
		if err := tab.write(o); err != nil {
			return err
		}
	}
	return nil
}

// deref returns *p, or nil (printed "-") for a nil p.
func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// formatBytes prints a size in B, KiB, MiB, GiB or TiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v, suffix = v/unit, s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// partitionSizes asks every broker leading a partition of topics for the
// partitions' sizes on disk. It returns what it learns: a cluster that
// does not serve DescribeLogDirs leaves the sizes out.
func partitionSizes(ctx context.Context, adm *kadm.Client, topics kadm.TopicDetails, names []string) map[string]map[int32]int64 {
	set := make(kadm.TopicsSet)
	for _, name := range names {
		for p := range topics[name].Partitions {
			set.Add(name, p)
		}
	}
	dirs, err := adm.DescribeAllLogDirs(ctx, set)
	if err != nil {
		return nil
	}
	sizes := make(map[string]map[int32]int64)
	leaders := make(map[string]map[int32]int32)
	for _, name := range names {
		leaders[name] = make(map[int32]int32)
		for p, d := range topics[name].Partitions {
			leaders[name][p] = d.Leader
		}
	}
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.IsFuture || leaders[p.Topic][p.Partition] != p.Broker {
				return
			}
			if sizes[p.Topic] == nil {
				sizes[p.Topic] = make(map[int32]int64)
			}
			sizes[p.Topic][p.Partition] = p.Size
		})
	})
	return sizes
}

// overrides returns the configs set on the topic itself.
func overrides(configs []kadm.Config) map[string]string {
	set := make(map[string]string)
	for _, c := range configs {
		if c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			continue
		}
		v := c.MaybeValue()
		if c.Sensitive {
			v = "(sensitive)"
		}
		set[c.Key] = v
	}
	return set
}

// formatConfigs prints configs as k=v, sorted by key.
func formatConfigs(configs map[string]string) string {
	if len(configs) == 0 {
		return "(none)"
	}
	var set []string
	for k, v := range configs {
		set = append(set, k+"="+v)
	}
	slices.Sort(set)
	return strings.Join(set, ", ")
}

func ids(ns []int32) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// listedOffset returns a listed offset, or nil if it was not listed.
func listedOffset(l kadm.ListedOffsets, topic string, p int32) *int64 {
	o, ok := l.Lookup(topic, p)
	if !ok || o.Err != nil {
		return nil
	}
	return &o.Offset
}

func topicDelete(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	return func(ctx context.Context, o *output, names []string) error {
		if len(names) == 0 {
			return errors.New("topic delete: name at least one topic")
		}
		adm, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("topic delete: %w", err)
		}
		defer cl.Close()
		resp, err := adm.DeleteTopics(ctx, names...)
		if err != nil {
			return fmt.Errorf("topic delete: %w", err)
		}
		t := outcomes{o: o, kind: "topic"}
		for _, name := range names {
			r, ok := resp[name]
			switch {
			case !ok:
				t.fail(name, errors.New("missing from the broker's response"), "")
			case r.Err != nil:
				t.fail(name, r.Err, r.ErrMessage)
			default:
				t.done("deleted topic "+name, map[string]any{"topic": name, "deleted": true})
			}
		}
		return t.result("delete", len(names))
	}
}

func topicAlterConfig(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	var sets, deletes listFlag
	fs.Var(&sets, "set", "set a topic config `key=value` (repeatable)")
	fs.Var(&deletes, "delete", "remove the topic config override `key`, restoring the default (repeatable)")
	return func(ctx context.Context, o *output, names []string) error {
		if len(names) == 0 {
			return errors.New("topic alter-config: name at least one topic")
		}
		if len(sets)+len(deletes) == 0 {
			return errors.New("topic alter-config: nothing to change: give --set k=v or --delete k")
		}
		alters := make([]kadm.AlterConfig, 0, len(sets)+len(deletes))
		for _, s := range sets {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return fmt.Errorf("topic alter-config: --set %q is not key=value", s)
			}
			alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
		}
		for _, k := range deletes {
			alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
		}
		adm, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("topic alter-config: %w", err)
		}
		defer cl.Close()
		resp, err := adm.AlterTopicConfigs(ctx, alters, names...)
		if err != nil {
			return fmt.Errorf("topic alter-config: %w", err)
		}
		t := outcomes{o: o, kind: "topic"}
		for _, name := range names {
			r, err := resp.On(name, nil)
			switch {
			case err != nil:
				t.fail(name, errors.New("missing from the broker's response"), "")
			case r.Err != nil:
				t.fail(name, r.Err, r.ErrMessage)
			default:
				t.done("altered configs of topic "+name, map[string]any{"topic": name, "altered": true})
			}
		}
		return t.result("alter-config", len(names))
	}
}

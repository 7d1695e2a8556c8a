package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topicUsage = `Usage: riffle topic <subcommand> [flags] [topic...]

Subcommands:
  create        create topics (--partitions, --replication-factor, --config k=v)
  list          list topics with their partition counts and replication factors
  describe      show partitions, replicas, offsets and config overrides
  delete        delete topics
  alter-config  set (--set k=v) or remove (--delete k) topic config overrides

Run "riffle topic <subcommand> -h" for its flags.`

func runTopic(ctx context.Context, args []string) error {
	return topicCmd(ctx, args, os.Stdout, os.Stderr)
}

// topicCmd runs a topic subcommand, writing tables to stdout and one line
// per failed topic to stderr.
func topicCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, topicUsage)
		if len(args) == 0 {
			return errors.New("topic: missing subcommand")
		}
		return nil
	}
	t := topicRun{stdout: stdout, stderr: stderr}
	sub := map[string]func(context.Context, []string) error{
		"create":       t.create,
		"list":         t.list,
		"describe":     t.describe,
		"delete":       t.delete,
		"alter-config": t.alterConfig,
	}[args[0]]
	if sub == nil {
		fmt.Fprintln(stderr, topicUsage)
		return fmt.Errorf("topic: unknown subcommand %q", args[0])
	}
	return sub(ctx, args[1:])
}

// topicRun carries a topic subcommand's output streams and counts the
// topics that failed.
type topicRun struct {
	stdout, stderr io.Writer
	failed         int
}

func (t *topicRun) fail(topic string, err error, detail string) {
	t.failed++
	msg := err.Error()
	if detail != "" && !strings.Contains(msg, detail) {
		msg += " (" + detail + ")"
	}
	fmt.Fprintf(t.stderr, "topic %s: %s\n", topic, msg)
}

// result turns the per-topic failures into the command's error.
func (t *topicRun) result(verb string, total int) error {
	if t.failed == 0 {
		return nil
	}
	return fmt.Errorf("topic %s: %d of %d topics failed", verb, t.failed, total)
}

func flagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("riffle topic "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func (t *topicRun) create(ctx context.Context, args []string) error {
	fs := flagSet("create", t.stderr)
	brokers := brokersFlag(fs)
	partitions := fs.Int("partitions", -1, "partitions per topic (-1: the broker's num.partitions)")
	replication := fs.Int("replication-factor", -1, "replicas per partition (-1: the broker's default.replication.factor)")
	var configs listFlag
	fs.Var(&configs, "config", "topic config override key=value (repeatable)")
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
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
	for _, name := range names {
		r, ok := resp[name]
		switch {
		case !ok:
			t.fail(name, errors.New("missing from the broker's response"), "")
		case r.Err != nil:
			t.fail(name, r.Err, r.ErrMessage)
		default:
			fmt.Fprintf(t.stdout, "created topic %s (partitions %d, replication factor %d)\n", name, r.NumPartitions, r.ReplicationFactor)
		}
	}
	return t.result("create", len(names))
}

func (t *topicRun) list(ctx context.Context, args []string) error {
	fs := flagSet("list", t.stderr)
	brokers := brokersFlag(fs)
	internal := fs.Bool("internal", false, "include internal topics such as __consumer_offsets")
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
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
	w := tabwriter.NewWriter(t.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITIONS\tREPLICATION-FACTOR")
	for _, name := range topics.Names() {
		d := topics[name]
		if d.Err != nil {
			t.fail(name, d.Err, "")
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%d\n", name, len(d.Partitions), replicationFactor(d))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("topic list: %w", err)
	}
	return t.result("list", len(topics))
}

// replicationFactor is the replica count of the topic's first partition.
func replicationFactor(d kadm.TopicDetail) int {
	if p, ok := d.Partitions[0]; ok {
		return len(p.Replicas)
	}
	return 0
}

func (t *topicRun) describe(ctx context.Context, args []string) error {
	fs := flagSet("describe", t.stderr)
	brokers := brokersFlag(fs)
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
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
	for i, name := range found {
		if i > 0 {
			fmt.Fprintln(t.stdout)
		}
		d := topics[name]
		fmt.Fprintf(t.stdout, "Topic: %s\tID: %s\tPartitions: %d\tReplicationFactor: %d\n", name, d.ID, len(d.Partitions), replicationFactor(d))
		if rc, err := configs.On(name, nil); err != nil {
			t.fail(name, fmt.Errorf("configs: %w", err), "")
		} else if rc.Err != nil {
			t.fail(name, fmt.Errorf("configs: %w", rc.Err), rc.ErrMessage)
		} else {
			fmt.Fprintf(t.stdout, "Configs: %s\n", overrides(rc.Configs))
		}
		w := tabwriter.NewWriter(t.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "PARTITION\tLEADER\tREPLICAS\tISR\tSTART\tEND")
		for _, p := range d.Partitions.Sorted() {
			if p.Err != nil {
				t.fail(fmt.Sprintf("%s[%d]", name, p.Partition), p.Err, "")
			}
			fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\n", p.Partition, p.Leader, ids(p.Replicas), ids(p.ISR),
				offset(starts, name, p.Partition), offset(ends, name, p.Partition))
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("topic describe: %w", err)
		}
	}
	return t.result("describe", len(names))
}

// overrides formats the configs set on the topic itself, sorted by name.
func overrides(configs []kadm.Config) string {
	var set []string
	for _, c := range configs {
		if c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			continue
		}
		v := c.MaybeValue()
		if c.Sensitive {
			v = "(sensitive)"
		}
		set = append(set, c.Key+"="+v)
	}
	if len(set) == 0 {
		return "(none)"
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

// offset formats a listed offset, or the error that stopped it being listed.
func offset(l kadm.ListedOffsets, topic string, p int32) string {
	o, ok := l.Lookup(topic, p)
	switch {
	case !ok:
		return "-"
	case o.Err != nil:
		return "error: " + o.Err.Error()
	}
	return fmt.Sprint(o.Offset)
}

func (t *topicRun) delete(ctx context.Context, args []string) error {
	fs := flagSet("delete", t.stderr)
	brokers := brokersFlag(fs)
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
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
	for _, name := range names {
		r, ok := resp[name]
		switch {
		case !ok:
			t.fail(name, errors.New("missing from the broker's response"), "")
		case r.Err != nil:
			t.fail(name, r.Err, r.ErrMessage)
		default:
			fmt.Fprintf(t.stdout, "deleted topic %s\n", name)
		}
	}
	return t.result("delete", len(names))
}

func (t *topicRun) alterConfig(ctx context.Context, args []string) error {
	fs := flagSet("alter-config", t.stderr)
	brokers := brokersFlag(fs)
	var sets, deletes listFlag
	fs.Var(&sets, "set", "set a topic config key=value (repeatable)")
	fs.Var(&deletes, "delete", "remove a topic config override, restoring the default (repeatable)")
	names, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
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
	for _, name := range names {
		r, err := resp.On(name, nil)
		switch {
		case err != nil:
			t.fail(name, errors.New("missing from the broker's response"), "")
		case r.Err != nil:
			t.fail(name, r.Err, r.ErrMessage)
		default:
			fmt.Fprintf(t.stdout, "altered configs of topic %s\n", name)
		}
	}
	return t.result("alter-config", len(names))
}

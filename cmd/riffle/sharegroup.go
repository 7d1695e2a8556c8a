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
)

const shareGroupUsage = `Usage: riffle share-group <subcommand> [flags] [group...]

Subcommands:
  list           list share groups and their states
  describe       show members, assignments, start offsets and lag
  reset-offsets  move a group's start offsets on a topic (--to-earliest,
                 --to-latest or --to-offset N); prints the plan unless --execute

Run "riffle share-group <subcommand> -h" for its flags.`

func runShareGroup(ctx context.Context, args []string) error {
	return shareGroupCmd(ctx, args, os.Stdout, os.Stderr)
}

// shareGroupCmd runs a share-group subcommand, writing tables to stdout
// and errors to stderr.
func shareGroupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, shareGroupUsage)
		if len(args) == 0 {
			return errors.New("share-group: missing subcommand")
		}
		return nil
	}
	s := shareGroupRun{stdout: stdout, stderr: stderr}
	sub := map[string]func(context.Context, []string) error{
		"list":          s.list,
		"describe":      s.describe,
		"reset-offsets": s.resetOffsets,
	}[args[0]]
	if sub == nil {
		fmt.Fprintln(stderr, shareGroupUsage)
		return fmt.Errorf("share-group: unknown subcommand %q", args[0])
	}
	return sub(ctx, args[1:])
}

// shareGroupRun carries a share-group subcommand's output streams.
type shareGroupRun struct {
	stdout, stderr io.Writer
}

func shareGroupFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("riffle share-group "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func (s *shareGroupRun) list(ctx context.Context, args []string) error {
	fs := shareGroupFlags("list", s.stderr)
	brokers := brokersFlag(fs)
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("share-group list: unexpected argument %q", rest[0])
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("share-group list: %w", err)
	}
	defer cl.Close()
	groups, err := adm.ListGroupsByType(ctx, []string{"share"})
	if err != nil {
		return fmt.Errorf("share-group list: %w", err)
	}
	w := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "GROUP\tSTATE")
	for _, g := range groups.Sorted() {
		fmt.Fprintf(w, "%s\t%s\n", g.Group, g.State)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("share-group list: %w", err)
	}
	return nil
}

func (s *shareGroupRun) describe(ctx context.Context, args []string) error {
	fs := shareGroupFlags("describe", s.stderr)
	brokers := brokersFlag(fs)
	groups, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("share-group describe: %w", err)
	}
	defer cl.Close()
	described, err := adm.DescribeShareGroups(ctx, groups...)
	if err != nil {
		return fmt.Errorf("share-group describe: %w", err)
	}
	if len(groups) == 0 {
		for g := range described {
			groups = append(groups, g)
		}
		slices.Sort(groups)
	}
	offsets, err := adm.DescribeShareGroupOffsets(ctx, groups...)
	if err != nil {
		return fmt.Errorf("share-group describe: offsets: %w", err)
	}
	failed := 0
	for i, name := range groups {
		if i > 0 {
			fmt.Fprintln(s.stdout)
		}
		d, ok := described[name]
		if !ok || d.Err != nil {
			err := d.Err
			if !ok {
				err = errors.New("missing from the broker's response")
			}
			fmt.Fprintf(s.stderr, "share group %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Fprintf(s.stdout, "GROUP %s  STATE %s  EPOCH %d  MEMBERS %d\n", name, d.GroupState, d.GroupEpoch, len(d.Members))
		w := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
		if len(d.Members) > 0 {
			fmt.Fprintln(w, "MEMBER\tCLIENT-ID\tHOST\tASSIGNMENT")
			for _, m := range d.Members {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.MemberID, m.ClientID, m.ClientHost, formatTopicsSet(m.Assignment))
			}
		}
		if o := offsets[name]; o.Err == nil && len(o.Offsets) > 0 {
			fmt.Fprintln(w, "TOPIC\tPARTITION\tSTART-OFFSET\tLAG")
			for _, so := range o.Offsets.Sorted() {
				if so.Err != nil {
					fmt.Fprintf(w, "%s\t%d\t-\t%v\n", so.Topic, so.Partition, so.Err)
					continue
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", so.Topic, so.Partition, so.StartOffset, so.Lag)
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("share-group describe: %w", err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("share-group describe: %d of %d groups failed", failed, len(groups))
	}
	return nil
}

// formatTopicsSet renders an assignment as topic:p,p topic:p.
func formatTopicsSet(ts kadm.TopicsSet) string {
	var parts []string
	for _, t := range ts.Sorted() {
		ps := make([]string, len(t.Partitions))
		for i, p := range t.Partitions {
			ps[i] = fmt.Sprint(p)
		}
		parts = append(parts, t.Topic+":"+strings.Join(ps, ","))
	}
	return strings.Join(parts, " ")
}

func (s *shareGroupRun) resetOffsets(ctx context.Context, args []string) error {
	fs := shareGroupFlags("reset-offsets", s.stderr)
	brokers := brokersFlag(fs)
	topic := fs.String("topic", "", "topic whose start offsets to move (required)")
	earliest := fs.Bool("to-earliest", false, "move to the log start offset")
	latest := fs.Bool("to-latest", false, "move to the log end offset")
	toOffset := fs.Int64("to-offset", -1, "move every partition to this offset (clamped to the log)")
	execute := fs.Bool("execute", false, "apply the plan; without it, only print it")
	groups, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{*earliest, *latest, *toOffset >= 0} {
		if set {
			modes++
		}
	}
	switch {
	case len(groups) != 1:
		return errors.New("share-group reset-offsets: name exactly one group")
	case *topic == "":
		return errors.New("share-group reset-offsets: --topic is required")
	case modes != 1:
		return errors.New("share-group reset-offsets: give one of --to-earliest, --to-latest, --to-offset")
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("share-group reset-offsets: %w", err)
	}
	defer cl.Close()
	list := adm.ListEndOffsets
	if *earliest || *toOffset >= 0 {
		list = adm.ListStartOffsets
	}
	listed, err := list(ctx, *topic)
	if err != nil {
		return fmt.Errorf("share-group reset-offsets: list offsets: %w", err)
	}
	if err := listed.Error(); err != nil {
		return fmt.Errorf("share-group reset-offsets: list offsets of %s: %w", *topic, err)
	}
	var ends kadm.ListedOffsets
	if *toOffset >= 0 {
		if ends, err = adm.ListEndOffsets(ctx, *topic); err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("share-group reset-offsets: list end offsets: %w", err)
		}
	}
	plan := make(kadm.Offsets)
	listed.Each(func(o kadm.ListedOffset) {
		at := o.Offset
		if *toOffset >= 0 {
			end, _ := ends.Lookup(o.Topic, o.Partition)
			at = min(max(*toOffset, o.Offset), end.Offset)
		}
		plan.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: at, LeaderEpoch: -1})
	})
	w := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITION\tNEW-START-OFFSET")
	for _, o := range plan.Sorted() {
		fmt.Fprintf(w, "%s\t%d\t%d\n", o.Topic, o.Partition, o.At)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("share-group reset-offsets: %w", err)
	}
	if !*execute {
		fmt.Fprintln(s.stdout, "dry run: add --execute to apply")
		return nil
	}
	resp, err := adm.AlterShareGroupOffsets(ctx, groups[0], plan)
	if err != nil {
		return fmt.Errorf("share-group reset-offsets: %w", err)
	}
	failed := 0
	resp.EachError(func(t string, p int32, err error) {
		fmt.Fprintf(s.stderr, "%s-%d: %v\n", t, p, err)
		failed++
	})
	if failed > 0 {
		return fmt.Errorf("share-group reset-offsets: %d partitions failed", failed)
	}
	fmt.Fprintf(s.stdout, "reset share group %s on %s\n", groups[0], *topic)
	return nil
}

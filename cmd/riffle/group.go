package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const groupUsage = `Usage: riffle group <subcommand> [flags] [group...]

Subcommands:
  list           list consumer groups with their type and state (--state, --type)
  describe       show members, assignments, committed offsets, end offsets and lag
  delete         delete empty groups and their committed offsets
  reset-offsets  move an empty group's committed offsets (--to-earliest, --to-latest,
                 --to-timestamp, --to-offset) for --topic or every committed topic

Run "riffle group <subcommand> -h" for its flags.`

func runGroup(ctx context.Context, args []string) error {
	return groupCmd(ctx, args, os.Stdout, os.Stderr)
}

// groupCmd runs a group subcommand, writing tables to stdout and one line
// per failed group to stderr.
func groupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, groupUsage)
		if len(args) == 0 {
			return errors.New("group: missing subcommand")
		}
		return nil
	}
	g := groupRun{stdout: stdout, stderr: stderr}
	sub := map[string]func(context.Context, []string) error{
		"list":          g.list,
		"describe":      g.describe,
		"delete":        g.delete,
		"reset-offsets": g.resetOffsets,
	}[args[0]]
	if sub == nil {
		fmt.Fprintln(stderr, groupUsage)
		return fmt.Errorf("group: unknown subcommand %q", args[0])
	}
	return sub(ctx, args[1:])
}

// groupRun carries a group subcommand's output streams.
type groupRun struct {
	stdout, stderr io.Writer
}

func groupFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("riffle group "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// listedGroup is one row of ListGroups, with the group type kadm omits.
type listedGroup struct {
	name, groupType, state, protocolType string
}

// listGroups lists the groups of the cluster, optionally filtered.
func listGroups(ctx context.Context, cl *kgo.Client, types, states []string) ([]listedGroup, error) {
	req := kmsg.NewPtrListGroupsRequest()
	req.TypesFilter, req.StatesFilter = types, states
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	var out []listedGroup
	for _, g := range resp.Groups {
		if g.GroupType == "share" {
			continue
		}
		out = append(out, listedGroup{g.Group, g.GroupType, g.GroupState, g.ProtocolType})
	}
	slices.SortFunc(out, func(a, b listedGroup) int { return cmp.Compare(a.name, b.name) })
	return out, nil
}

func (g *groupRun) list(ctx context.Context, args []string) error {
	fs := groupFlags("list", g.stderr)
	brokers := brokersFlag(fs)
	var states, types listFlag
	fs.Var(&states, "state", "only groups in this state (Empty, Stable, PreparingRebalance, Reconciling, ...); repeatable")
	fs.Var(&types, "type", "only groups of this type (classic or consumer); repeatable")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("group list: unexpected argument %q", rest[0])
	}
	_, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("group list: %w", err)
	}
	defer cl.Close()
	groups, err := listGroups(ctx, cl, types, states)
	if err != nil {
		return fmt.Errorf("group list: %w", err)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "GROUP\tTYPE\tSTATE\tPROTOCOL-TYPE")
	for _, lg := range groups {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", lg.name, lg.groupType, lg.state, lg.protocolType)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("group list: %w", err)
	}
	return nil
}

// groupMember is a member of either protocol as describe shows it.
type groupMember struct {
	id, clientID, host string
	epoch              string
	assigned           kadm.TopicsSet
}

// groupSummary is what describe shows of a group besides its offsets.
type groupSummary struct {
	groupType, state, detail string
	members                  []groupMember
}

// describeGroup describes a group of either protocol: ConsumerGroup-
// Describe first, DescribeGroups when the group is not a consumer group.
func describeGroup(ctx context.Context, adm *kadm.Client, name string) (groupSummary, error) {
	cgs, err := adm.DescribeConsumerGroups(ctx, name)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		var se *kadm.ShardErrors
		if !errors.As(err, &se) {
			return groupSummary{}, err
		}
	}
	if d, ok := cgs[name]; ok && d.Err == nil {
		s := groupSummary{groupType: "consumer", state: d.State, detail: fmt.Sprintf("EPOCH %d  ASSIGNOR %s", d.Epoch, d.AssignorName)}
		for _, m := range d.Members {
			s.members = append(s.members, groupMember{m.MemberID, m.ClientID, m.ClientHost, strconv.Itoa(int(m.MemberEpoch)), m.Assignment})
		}
		return s, nil
	}
	gs, err := adm.DescribeGroups(ctx, name)
	if err != nil {
		return groupSummary{}, err
	}
	d, ok := gs[name]
	switch {
	case !ok:
		return groupSummary{}, errors.New("missing from the broker's response")
	case d.Err != nil:
		return groupSummary{}, d.Err
	case d.State == "Dead":
		return groupSummary{}, kerr.GroupIDNotFound
	}
	s := groupSummary{groupType: "classic", state: d.State, detail: "PROTOCOL " + d.ProtocolType + "/" + d.Protocol}
	for _, m := range d.Members {
		gm := groupMember{m.MemberID, m.ClientID, m.ClientHost, "-", kadm.TopicsSet{}}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				gm.assigned.Add(t.Topic, t.Partitions...)
			}
		}
		s.members = append(s.members, gm)
	}
	return s, nil
}

func (g *groupRun) describe(ctx context.Context, args []string) error {
	fs := groupFlags("describe", g.stderr)
	brokers := brokersFlag(fs)
	groups, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("group describe: %w", err)
	}
	defer cl.Close()
	if len(groups) == 0 {
		listed, err := listGroups(ctx, cl, nil, nil)
		if err != nil {
			return fmt.Errorf("group describe: %w", err)
		}
		for _, lg := range listed {
			groups = append(groups, lg.name)
		}
	}
	failed := 0
	for i, name := range groups {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		if err := g.describeOne(ctx, adm, name); err != nil {
			fmt.Fprintf(g.stderr, "group %s: %v\n", name, err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("group describe: %d of %d groups failed", failed, len(groups))
	}
	return nil
}

// describeOne prints one group: a header, its members, and per partition
// the owner, committed offset, end offset and lag.
func (g *groupRun) describeOne(ctx context.Context, adm *kadm.Client, name string) error {
	s, err := describeGroup(ctx, adm, name)
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, name)
	if err != nil {
		return fmt.Errorf("fetch committed offsets: %w", err)
	}
	owners := make(map[string]map[int32]string)
	topics := committed.Partitions()
	for _, m := range s.members {
		for t, ps := range m.assigned {
			for p := range ps {
				if owners[t] == nil {
					owners[t] = make(map[int32]string)
				}
				owners[t][p] = m.id
				topics.Add(t, p)
			}
		}
	}
	var ends kadm.ListedOffsets
	if names := topics.Topics(); len(names) > 0 {
		if ends, err = adm.ListEndOffsets(ctx, names...); err != nil {
			return fmt.Errorf("list end offsets: %w", err)
		}
	}
	fmt.Fprintf(g.stdout, "GROUP %s  TYPE %s  STATE %s  %s  MEMBERS %d\n", name, s.groupType, s.state, s.detail, len(s.members))
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	if len(s.members) > 0 {
		fmt.Fprintln(w, "MEMBER\tCLIENT-ID\tHOST\tEPOCH\tASSIGNMENT")
		for _, m := range s.members {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.id, m.clientID, m.host, m.epoch, formatTopicsSet(m.assigned))
		}
	}
	if len(topics) > 0 {
		fmt.Fprintln(w, "TOPIC\tPARTITION\tMEMBER\tCOMMITTED\tEND\tLAG")
		for _, tp := range topics.Sorted() {
			for _, p := range tp.Partitions {
				owner := owners[tp.Topic][p]
				if owner == "" {
					owner = "-"
				}
				committedAt, end, lag := "-", "-", "-"
				c, hasCommit := committed.Lookup(tp.Topic, p)
				if hasCommit && c.Err == nil && c.At >= 0 {
					committedAt = strconv.FormatInt(c.At, 10)
				}
				if e, ok := ends.Lookup(tp.Topic, p); ok && e.Err == nil {
					end = strconv.FormatInt(e.Offset, 10)
					if hasCommit && c.Err == nil && c.At >= 0 {
						lag = strconv.FormatInt(max(0, e.Offset-c.At), 10)
					} else {
						lag = end
					}
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", tp.Topic, p, owner, committedAt, end, lag)
			}
		}
	}
	return w.Flush()
}

func (g *groupRun) delete(ctx context.Context, args []string) error {
	fs := groupFlags("delete", g.stderr)
	brokers := brokersFlag(fs)
	groups, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return errors.New("group delete: name at least one group")
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("group delete: %w", err)
	}
	defer cl.Close()
	resps, err := adm.DeleteGroups(ctx, groups...)
	if err != nil {
		return fmt.Errorf("group delete: %w", err)
	}
	failed := 0
	for _, name := range groups {
		r, ok := resps[name]
		switch {
		case !ok:
			fmt.Fprintf(g.stderr, "group %s: missing from the broker's response\n", name)
			failed++
		case errors.Is(r.Err, kerr.NonEmptyGroup):
			fmt.Fprintf(g.stderr, "group %s: %v (the group still has members; stop them first)\n", name, r.Err)
			failed++
		case r.Err != nil:
			fmt.Fprintf(g.stderr, "group %s: %v\n", name, r.Err)
			failed++
		default:
			fmt.Fprintf(g.stdout, "deleted group %s\n", name)
		}
	}
	if failed > 0 {
		return fmt.Errorf("group delete: %d of %d groups failed", failed, len(groups))
	}
	return nil
}

func (g *groupRun) resetOffsets(ctx context.Context, args []string) error {
	fs := groupFlags("reset-offsets", g.stderr)
	brokers := brokersFlag(fs)
	var topics listFlag
	fs.Var(&topics, "topic", "topic whose offsets to reset (repeatable; default: every topic the group has committed offsets for)")
	earliest := fs.Bool("to-earliest", false, "reset to the log start offset")
	latest := fs.Bool("to-latest", false, "reset to the log end offset")
	toTime := fs.String("to-timestamp", "", "reset to the first offset at or after this time (RFC 3339 or Unix milliseconds)")
	toOffset := fs.Int64("to-offset", -1, "reset every partition to this offset, clamped to the log")
	dryRun := fs.Bool("dry-run", false, "print the new offsets without committing them")
	groups, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{*earliest, *latest, *toTime != "", *toOffset >= 0} {
		if set {
			modes++
		}
	}
	switch {
	case len(groups) != 1:
		return errors.New("group reset-offsets: name exactly one group")
	case modes != 1:
		return errors.New("group reset-offsets: give exactly one of --to-earliest, --to-latest, --to-timestamp, --to-offset")
	}
	name := groups[0]
	var millis int64
	if *toTime != "" {
		if millis, err = parseTimestamp(*toTime); err != nil {
			return fmt.Errorf("group reset-offsets: --to-timestamp: %w", err)
		}
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("group reset-offsets: %w", err)
	}
	defer cl.Close()

	s, err := describeGroup(ctx, adm, name)
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
	case err != nil:
		return fmt.Errorf("group reset-offsets: describe %s: %w", name, err)
	case len(s.members) > 0 || s.state != "Empty":
		return fmt.Errorf("group reset-offsets: group %s is %s with %d members; offsets can only be reset while the group is empty", name, s.state, len(s.members))
	}
	committed, err := adm.FetchOffsets(ctx, name)
	if err != nil {
		return fmt.Errorf("group reset-offsets: fetch committed offsets: %w", err)
	}
	if len(topics) == 0 {
		topics = committed.Partitions().Topics()
		if len(topics) == 0 {
			return fmt.Errorf("group reset-offsets: group %s has no committed offsets; name topics with --topic", name)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("group reset-offsets: list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("group reset-offsets: list end offsets: %w", err)
	}
	var atTime kadm.ListedOffsets
	if *toTime != "" {
		if atTime, err = adm.ListOffsetsAfterMilli(ctx, millis, topics...); err != nil {
			return fmt.Errorf("group reset-offsets: list offsets at %s: %w", *toTime, err)
		}
	}
	if err := errors.Join(starts.Error(), ends.Error()); err != nil {
		return fmt.Errorf("group reset-offsets: %w", err)
	}
	next := make(kadm.Offsets)
	var failed error
	ends.Each(func(e kadm.ListedOffset) {
		start, _ := starts.Lookup(e.Topic, e.Partition)
		at := e.Offset
		switch {
		case *earliest:
			at = start.Offset
		case *toOffset >= 0:
			at = min(max(*toOffset, start.Offset), e.Offset)
		case *toTime != "":
			o, ok := atTime.Lookup(e.Topic, e.Partition)
			if !ok || o.Err != nil {
				failed = errors.Join(failed, fmt.Errorf("%s[%d]: no offset for %s", e.Topic, e.Partition, *toTime))
				return
			}
			if o.Offset >= 0 {
				at = o.Offset
			}
		}
		next.Add(kadm.Offset{Topic: e.Topic, Partition: e.Partition, At: at, LeaderEpoch: -1})
	})
	if failed != nil {
		return fmt.Errorf("group reset-offsets: %w", failed)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TOPIC\tPARTITION\tOLD\tNEW")
	for _, o := range next.Sorted() {
		old := "-"
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			old = strconv.FormatInt(c.At, 10)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", o.Topic, o.Partition, old, o.At)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("group reset-offsets: %w", err)
	}
	if *dryRun {
		return nil
	}
	resps, err := adm.CommitOffsets(ctx, name, next)
	if err != nil {
		return fmt.Errorf("group reset-offsets: commit: %w", err)
	}
	if err := resps.Error(); err != nil {
		if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.RebalanceInProgress) {
			return fmt.Errorf("group reset-offsets: group %s became active: %w", name, err)
		}
		return fmt.Errorf("group reset-offsets: commit: %w", err)
	}
	fmt.Fprintf(g.stdout, "reset %d partitions of group %s\n", len(next.Sorted()), name)
	return nil
}

// parseTimestamp reads an RFC 3339 time or Unix milliseconds.
func parseTimestamp(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither RFC 3339 nor Unix milliseconds", s)
	}
	return t.UnixMilli(), nil
}

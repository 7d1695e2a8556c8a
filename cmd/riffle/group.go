package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func groupCmds() *cmdSpec {
	return &cmdSpec{
		name:     "group",
		summary:  "list, describe, delete consumer groups and reset their offsets",
		synopsis: "<subcommand> [flags] [group...]",
		subs: []*cmdSpec{
			{name: "list", summary: "list consumer groups with their type and state", synopsis: "[flags]",
				examples: []string{"riffle group list --state Stable --type consumer"},
				setup:    groupList},
			{name: "describe", summary: "show members, assignments, committed offsets, end offsets and lag", synopsis: "[flags] [group...]",
				about: []string{"Shows each group (every group if none is named) of either protocol, classic or KIP-848: " +
					"its state, its members with their assignments and, per partition, the owner, the committed offset, " +
					"the end offset and the lag.",
					"--watch redraws the description every --interval until interrupted; with --output json it prints " +
						"one JSON document per line each time."},
				examples: []string{"riffle group describe billing", "riffle group describe billing --watch --interval 1s"},
				setup:    groupDescribe},
			{name: "delete", summary: "delete empty groups and their committed offsets", synopsis: "[flags] group...",
				examples: []string{"riffle group delete billing"},
				setup:    groupDelete},
			{name: "reset-offsets", summary: "move an empty group's committed offsets", synopsis: "[flags] group",
				about: []string{"Moves the committed offsets of an empty group to the log start (--to-earliest), the " +
					"log end (--to-latest), the first offset at or after a time (--to-timestamp) or an offset (--to-offset), " +
					"for --topic or every topic the group has committed offsets for. --dry-run prints the plan only."},
				examples: []string{"riffle group reset-offsets billing --topic orders --to-earliest --dry-run"},
				setup:    groupResetOffsets},
		},
	}
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

func groupList(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	var states, types listFlag
	fs.Var(&states, "state", "only groups in this `state` (Empty, Stable, PreparingRebalance, Reconciling, ...); repeatable")
	fs.Var(&types, "type", "only groups of this `type` (classic or consumer); repeatable")
	return func(ctx context.Context, o *output, rest []string) error {
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
		tab := newTable("GROUP", "TYPE", "STATE", "PROTOCOL-TYPE")
		for _, lg := range groups {
			tab.row(lg.name, lg.groupType, lg.state, lg.protocolType)
		}
		if err := o.print(tab); err != nil {
			return fmt.Errorf("group list: %w", err)
		}
		return nil
	}
}

// groupMember is a member of either protocol as describe shows it.
type groupMember struct {
	ID       string `json:"member_id"`
	ClientID string `json:"client_id"`
	Host     string `json:"host"`
	// Epoch is the KIP-848 member epoch; classic members have none.
	Epoch    *int32         `json:"member_epoch,omitempty"`
	Assigned kadm.TopicsSet `json:"-"`
	// Assignment is Assigned for JSON: partitions by topic.
	Assignment map[string][]int32 `json:"assignment"`
}

// newGroupMember builds a member, its assignment in both forms.
func newGroupMember(id, clientID, host string, epoch *int32, assigned kadm.TopicsSet) groupMember {
	m := groupMember{ID: id, ClientID: clientID, Host: host, Epoch: epoch, Assigned: assigned, Assignment: map[string][]int32{}}
	for _, t := range assigned.Sorted() {
		m.Assignment[t.Topic] = t.Partitions
	}
	return m
}

// groupSummary is what describe shows of a group besides its offsets.
type groupSummary struct {
	Group string `json:"group"`
	Type  string `json:"type"`
	State string `json:"state"`
	// Epoch and Assignor are a KIP-848 group's.
	Epoch    *int32 `json:"group_epoch,omitempty"`
	Assignor string `json:"assignor,omitempty"`
	// ProtocolType and Protocol are a classic group's.
	ProtocolType string        `json:"protocol_type,omitempty"`
	Protocol     string        `json:"protocol,omitempty"`
	Members      []groupMember `json:"members"`
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
		s := groupSummary{Group: name, Type: "consumer", State: d.State, Epoch: &d.Epoch, Assignor: d.AssignorName, Members: []groupMember{}}
		for _, m := range d.Members {
			s.Members = append(s.Members, newGroupMember(m.MemberID, m.ClientID, m.ClientHost, &m.MemberEpoch, m.Assignment))
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
	s := groupSummary{Group: name, Type: "classic", State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol, Members: []groupMember{}}
	for _, m := range d.Members {
		assigned := kadm.TopicsSet{}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				assigned.Add(t.Topic, t.Partitions...)
			}
		}
		s.Members = append(s.Members, newGroupMember(m.MemberID, m.ClientID, m.ClientHost, nil, assigned))
	}
	return s, nil
}

// describedGroup is a group with its offsets, as describe shows it.
type describedGroup struct {
	groupSummary
	Offsets []groupOffset `json:"offsets"`
}

// groupOffset is one partition of a describedGroup; nil fields are not known.
type groupOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Member    string `json:"member_id,omitempty"`
	Committed *int64 `json:"committed_offset"`
	End       *int64 `json:"end_offset"`
	Lag       *int64 `json:"lag"`
}

func groupDescribe(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	watch := fs.Bool("watch", false, "redraw the description every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch redraws")
	return func(ctx context.Context, o *output, groups []string) error {
		if *interval <= 0 {
			return fmt.Errorf("group describe: --interval must be positive, not %v", *interval)
		}
		adm, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("group describe: %w", err)
		}
		defer cl.Close()
		if !*watch {
			return describeGroups(ctx, o, cl, adm, groups)
		}
		tick := time.NewTicker(*interval)
		defer tick.Stop()
		for {
			if o.tty && !o.json {
				fmt.Fprint(o.stdout, "\x1b[H\x1b[2J")
				fmt.Fprintf(o.stdout, "every %v, at %s; interrupt to stop\n\n", *interval, time.Now().Format(time.TimeOnly))
			}
			err := describeGroups(ctx, o, cl, adm, groups)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				fmt.Fprintln(o.stderr, err)
			}
			if !o.tty && !o.json {
				fmt.Fprintln(o.stdout)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	}
}

// describeGroups prints the named groups, or every group if none is named.
func describeGroups(ctx context.Context, o *output, cl *kgo.Client, adm *kadm.Client, groups []string) error {
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
	described := []describedGroup{}
	for _, name := range groups {
		dg, err := collectGroup(ctx, adm, name)
		if err != nil {
			fmt.Fprintf(o.stderr, "group %s: %v\n", name, err)
			failed++
			continue
		}
		described = append(described, dg)
	}
	var err error
	if o.json {
		var b []byte
		if b, err = json.Marshal(described); err == nil {
			_, err = fmt.Fprintf(o.stdout, "%s\n", b)
		}
	} else {
		for i, dg := range described {
			if i > 0 {
				fmt.Fprintln(o.stdout)
			}
			if err = writeGroup(o, dg); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("group describe: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("group describe: %d of %d groups failed", failed, len(groups))
	}
	return nil
}

// collectGroup describes one group with, per partition it has committed
// or is assigned, the owner, committed offset, end offset and lag.
func collectGroup(ctx context.Context, adm *kadm.Client, name string) (describedGroup, error) {
	s, err := describeGroup(ctx, adm, name)
	if err != nil {
		return describedGroup{}, err
	}
	committed, err := adm.FetchOffsets(ctx, name)
	if err != nil {
		return describedGroup{}, fmt.Errorf("fetch committed offsets: %w", err)
	}
	owners := make(map[string]map[int32]string)
	topics := committed.Partitions()
	for _, m := range s.Members {
		for t, ps := range m.Assigned {
			for p := range ps {
				if owners[t] == nil {
					owners[t] = make(map[int32]string)
				}
				owners[t][p] = m.ID
				topics.Add(t, p)
			}
		}
	}
	var ends kadm.ListedOffsets
	if names := topics.Topics(); len(names) > 0 {
		if ends, err = adm.ListEndOffsets(ctx, names...); err != nil {
			return describedGroup{}, fmt.Errorf("list end offsets: %w", err)
		}
	}
	dg := describedGroup{groupSummary: s, Offsets: []groupOffset{}}
	for _, tp := range topics.Sorted() {
		for _, p := range tp.Partitions {
			off := groupOffset{Topic: tp.Topic, Partition: p, Member: owners[tp.Topic][p]}
			if c, ok := committed.Lookup(tp.Topic, p); ok && c.Err == nil && c.At >= 0 {
				off.Committed = &c.At
			}
			if e, ok := ends.Lookup(tp.Topic, p); ok && e.Err == nil {
				end := e.Offset
				lag := end
				if off.Committed != nil {
					lag = max(0, end-*off.Committed)
				}
				off.End, off.Lag = &end, &lag
			}
			dg.Offsets = append(dg.Offsets, off)
		}
	}
	return dg, nil
}

// writeGroup prints a described group as text: a header, its members,
// and its partitions.
func writeGroup(o *output, dg describedGroup) error {
	detail := "PROTOCOL " + dg.ProtocolType + "/" + dg.Protocol
	if dg.Epoch != nil {
		detail = fmt.Sprintf("EPOCH %d  ASSIGNOR %s", *dg.Epoch, dg.Assignor)
	}
	fmt.Fprintf(o.stdout, "%s %s  TYPE %s  STATE %s  %s  MEMBERS %d\n", o.bold("GROUP"), dg.Group, dg.Type, dg.State, detail, len(dg.Members))
	if len(dg.Members) > 0 {
		tab := newTable("MEMBER", "CLIENT-ID", "HOST", "EPOCH", "ASSIGNMENT")
		for _, m := range dg.Members {
			tab.row(m.ID, m.ClientID, m.Host, deref(m.Epoch), formatTopicsSet(m.Assigned))
		}
		if err := tab.write(o); err != nil {
			return err
		}
	}
	if len(dg.Offsets) > 0 {
		tab := newTable("TOPIC", "PARTITION", "MEMBER", "COMMITTED", "END", "LAG")
		for _, off := range dg.Offsets {
			var member any
			if off.Member != "" {
				member = off.Member
			}
			tab.row(off.Topic, off.Partition, member, deref(off.Committed), deref(off.End), notableIf(deref(off.Lag), off.Lag != nil && *off.Lag > 0))
		}
		return tab.write(o)
	}
	return nil
}

func groupDelete(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	return func(ctx context.Context, o *output, groups []string) error {
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
		res := outcomes{o: o, kind: "group"}
		for _, name := range groups {
			r, ok := resps[name]
			switch {
			case !ok:
				res.fail(name, errors.New("missing from the broker's response"), "")
			case errors.Is(r.Err, kerr.NonEmptyGroup):
				res.fail(name, r.Err, "the group still has members; stop them first")
			case r.Err != nil:
				res.fail(name, r.Err, "")
			default:
				res.done("deleted group "+name, map[string]any{"group": name, "deleted": true})
			}
		}
		return res.result("delete", len(groups))
	}
}

func groupResetOffsets(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	var topics listFlag
	fs.Var(&topics, "topic", "`topic` whose offsets to reset (repeatable; default: every topic the group has committed offsets for)")
	earliest := fs.Bool("to-earliest", false, "reset to the log start offset")
	latest := fs.Bool("to-latest", false, "reset to the log end offset")
	toTime := fs.String("to-timestamp", "", "reset to the first offset at or after this time (RFC 3339 or Unix milliseconds)")
	toOffset := fs.Int64("to-offset", -1, "reset every partition to this offset, clamped to the log")
	dryRun := fs.Bool("dry-run", false, "print the new offsets without committing them")
	return func(ctx context.Context, o *output, groups []string) error {
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
			var err error
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
		case len(s.Members) > 0 || s.State != "Empty":
			return fmt.Errorf("group reset-offsets: group %s is %s with %d members; offsets can only be reset while the group is empty", name, s.State, len(s.Members))
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
		plan := newTable("TOPIC", "PARTITION", "OLD", "NEW")
		for _, n := range next.Sorted() {
			var old any
			if c, ok := committed.Lookup(n.Topic, n.Partition); ok && c.Err == nil && c.At >= 0 {
				old = c.At
			}
			plan.row(n.Topic, n.Partition, old, n.At)
		}
		if *dryRun || !o.json {
			if err := o.print(plan); err != nil {
				return fmt.Errorf("group reset-offsets: %w", err)
			}
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
		if o.json {
			return o.emit(map[string]any{"group": name, "committed": plan.records()})
		}
		fmt.Fprintf(o.stdout, "reset %d partitions of group %s\n", len(next.Sorted()), name)
		return nil
	}
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

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

func shareGroupCmds() *cmdSpec {
	return &cmdSpec{
		name:     "share-group",
		summary:  "list, describe and reset share groups",
		synopsis: "<subcommand> [flags] [group...]",
		subs: []*cmdSpec{
			{name: "list", summary: "list share groups and their states", synopsis: "[flags]",
				examples: []string{"riffle share-group list --output json"},
				setup:    shareGroupList},
			{name: "describe", summary: "show members, assignments, start offsets and lag", synopsis: "[flags] [group...]",
				examples: []string{"riffle share-group describe workers"},
				setup:    shareGroupDescribe},
			{name: "reset-offsets", summary: "move a share group's start offsets on a topic", synopsis: "[flags] group",
				about: []string{"Moves the group's start offsets on --topic to the log start (--to-earliest), the log end " +
					"(--to-latest) or an offset (--to-offset, clamped to the log). It prints the plan and applies it only " +
					"with --execute."},
				examples: []string{"riffle share-group reset-offsets workers --topic jobs --to-earliest --execute"},
				setup:    shareGroupResetOffsets},
		},
	}
}

func shareGroupList(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	return func(ctx context.Context, o *output, rest []string) error {
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
		tab := newTable("GROUP", "STATE")
		for _, g := range groups.Sorted() {
			tab.row(g.Group, g.State)
		}
		if err := o.print(tab); err != nil {
			return fmt.Errorf("share-group list: %w", err)
		}
		return nil
	}
}

func shareGroupDescribe(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	return func(ctx context.Context, o *output, groups []string) error {
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
		shown := []describedShareGroup{}
		for _, name := range groups {
			d, ok := described[name]
			if !ok || d.Err != nil {
				err := d.Err
				if !ok {
					err = errors.New("missing from the broker's response")
				}
				fmt.Fprintf(o.stderr, "share group %s: %v\n", name, err)
				failed++
				continue
			}
			sg := describedShareGroup{Group: name, State: d.GroupState, Epoch: d.GroupEpoch, Members: []groupMember{}, Offsets: []shareOffset{}}
			for _, m := range d.Members {
				sg.Members = append(sg.Members, newGroupMember(m.MemberID, m.ClientID, m.ClientHost, nil, m.Assignment))
			}
			if g := offsets[name]; g.Err == nil {
				for _, so := range g.Offsets.Sorted() {
					off := shareOffset{Topic: so.Topic, Partition: so.Partition}
					if so.Err != nil {
						off.Error = so.Err.Error()
					} else {
						off.Start, off.Lag = &so.StartOffset, &so.Lag
					}
					sg.Offsets = append(sg.Offsets, off)
				}
			}
			shown = append(shown, sg)
		}
		if o.json {
			if err := o.emit(shown); err != nil {
				return err
			}
		} else {
			for i, sg := range shown {
				if i > 0 {
					fmt.Fprintln(o.stdout)
				}
				if err := writeShareGroup(o, sg); err != nil {
					return fmt.Errorf("share-group describe: %w", err)
				}
			}
		}
		if failed > 0 {
			return fmt.Errorf("share-group describe: %d of %d groups failed", failed, len(groups))
		}
		return nil
	}
}

// describedShareGroup is a share group as describe shows it.
type describedShareGroup struct {
	Group   string        `json:"group"`
	State   string        `json:"state"`
	Epoch   int32         `json:"group_epoch"`
	Members []groupMember `json:"members"`
	Offsets []shareOffset `json:"offsets"`
}

// shareOffset is one partition of a describedShareGroup.
type shareOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Start     *int64 `json:"start_offset"`
	Lag       *int64 `json:"lag"`
	Error     string `json:"error,omitempty"`
}

// writeShareGroup prints a share group as text.
func writeShareGroup(o *output, sg describedShareGroup) error {
	fmt.Fprintf(o.stdout, "%s %s  STATE %s  EPOCH %d  MEMBERS %d\n", o.bold("GROUP"), sg.Group, sg.State, sg.Epoch, len(sg.Members))
	if len(sg.Members) > 0 {
		tab := newTable("MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT")
		for _, m := range sg.Members {
			tab.row(m.ID, m.ClientID, m.Host, formatTopicsSet(m.Assigned))
		}
		if err := tab.write(o); err != nil {
			return err
		}
	}
	if len(sg.Offsets) == 0 {
		return nil
	}
	tab := newTable("TOPIC", "PARTITION", "START-OFFSET", "LAG")
	for _, so := range sg.Offsets {
		if so.Error != "" {
			tab.row(so.Topic, so.Partition, nil, notable{so.Error})
			continue
		}
		tab.row(so.Topic, so.Partition, *so.Start, notableIf(*so.Lag, *so.Lag > 0))
	}
	return tab.write(o)
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

func shareGroupResetOffsets(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	topic := fs.String("topic", "", "topic whose start offsets to move (required)")
	earliest := fs.Bool("to-earliest", false, "move to the log start offset")
	latest := fs.Bool("to-latest", false, "move to the log end offset")
	toOffset := fs.Int64("to-offset", -1, "move every partition to this offset (clamped to the log)")
	execute := fs.Bool("execute", false, "apply the plan; without it, only print it")
	return func(ctx context.Context, o *output, groups []string) error {
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
		listed.Each(func(l kadm.ListedOffset) {
			at := l.Offset
			if *toOffset >= 0 {
				end, _ := ends.Lookup(l.Topic, l.Partition)
				at = min(max(*toOffset, l.Offset), end.Offset)
			}
			plan.Add(kadm.Offset{Topic: l.Topic, Partition: l.Partition, At: at, LeaderEpoch: -1})
		})
		tab := newTable("TOPIC", "PARTITION", "NEW-START-OFFSET")
		for _, n := range plan.Sorted() {
			tab.row(n.Topic, n.Partition, n.At)
		}
		if !*execute || !o.json {
			if err := o.print(tab); err != nil {
				return fmt.Errorf("share-group reset-offsets: %w", err)
			}
		}
		if !*execute {
			if !o.json {
				fmt.Fprintln(o.stdout, "dry run: add --execute to apply")
			}
			return nil
		}
		resp, err := adm.AlterShareGroupOffsets(ctx, groups[0], plan)
		if err != nil {
			return fmt.Errorf("share-group reset-offsets: %w", err)
		}
		failed := 0
		resp.EachError(func(t string, p int32, err error) {
			fmt.Fprintf(o.stderr, "%s-%d: %v\n", t, p, err)
			failed++
		})
		if failed > 0 {
			return fmt.Errorf("share-group reset-offsets: %d partitions failed", failed)
		}
		if o.json {
			return o.emit(map[string]any{"group": groups[0], "applied": tab.records()})
		}
		fmt.Fprintf(o.stdout, "reset share group %s on %s\n", groups[0], *topic)
		return nil
	}
}

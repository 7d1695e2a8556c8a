package topology_test

import (
	"testing"
	"time"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

// TestVersionedStreamTableJoin reproduces KIP-914's stream-table join on a
// versioned table: each view meets the user's row valid at the view's
// time, whatever the order in which views and table updates arrive; an
// out-of-order table update goes into the history without being forwarded;
// a view older than the history retention finds no row.
func TestVersionedStreamTableJoin(t *testing.T) {
	b := topology.NewBuilder()
	users := topology.VersionedTableFrom[string, string](b, "users", "users", time.Second)
	users.ToStream().To("user-updates")
	views := topology.FromTopics[string, string](b, []string{"views"})
	topology.LeftJoin(views, users, func(page, region string, found bool) string {
		if !found {
			return page + "@none"
		}
		return page + "@" + region
	}).To("enriched")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := streamstest.New(top, streamstest.ApplicationID("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	u := streamstest.NewInputTopic(d, "users", serde.String(), serde.String())
	v := streamstest.NewInputTopic(d, "views", serde.String(), serde.String())
	steps := []struct {
		in        *streamstest.InputTopic[string, string]
		key, val  string
		ts        int64
		tombstone bool
	}{
		{in: u, key: "alice", val: "eu", ts: 100},
		{in: u, key: "alice", val: "us", ts: 300},
		{in: v, key: "alice", val: "p1", ts: 200}, // eu, not the latest us
		{in: v, key: "alice", val: "p2", ts: 350}, // us
		{in: u, key: "alice", val: "ap", ts: 250}, // out of order: history only
		{in: v, key: "alice", val: "p3", ts: 260}, // ap
		{in: v, key: "alice", val: "p4", ts: 50},  // before alice's first row
		{in: u, key: "alice", ts: 400, tombstone: true},
		{in: v, key: "alice", val: "p5", ts: 450}, // deleted
		{in: v, key: "alice", val: "p6", ts: 320}, // us again
		{in: u, key: "carol", val: "c1", ts: 150},
		{in: u, key: "bob", val: "x", ts: 10_000},    // the history now starts at 9000
		{in: v, key: "carol", val: "p7", ts: 200},    // older than the history
		{in: v, key: "carol", val: "p8", ts: 10_000}, // c1, still carol's latest
		{in: u, key: "bob", val: "late", ts: 8_000},  // older than the history: dropped
		{in: v, key: "bob", val: "p9", ts: 9_500},    // no row of bob at 9500
	}
	for _, s := range steps {
		var err error
		if s.tombstone {
			err = s.in.PipeRaw([]byte(s.key), nil, at(s.ts), nil)
		} else {
			err = s.in.PipeAt(s.key, s.val, at(s.ts))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	expect(t, stamped(t, streamstest.NewOutputTopic(d, "enriched", serde.String(), serde.String())),
		"alice=p1@eu@200", "alice=p2@us@350", "alice=p3@ap@260", "alice=p4@none@50", "alice=p5@none@450",
		"alice=p6@us@320", "carol=p7@none@200", "carol=p8@c1@10000", "bob=p9@none@9500")
	// The table's own updates leave out the out-of-order ap and the
	// dropped late row.
	expect(t, stamped(t, streamstest.NewOutputTopic(d, "user-updates", serde.String(), serde.String())),
		"alice=eu@100", "alice=us@300", "alice=@400", "carol=c1@150", "bob=x@10000")
	store, err := streamstest.Store[state.VersionedKeyValueStore[string, string]](d, "users")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok, err := store.GetAsOf("carol", at(9_500)); !ok || err != nil || r.Value != "c1" || r.Timestamp.UnixMilli() != 150 {
		t.Fatalf("carol as of 9500 = %+v %v %v, want c1 from 150", r, ok, err)
	}
	if _, ok, err := store.Get("alice"); ok || err != nil {
		t.Fatalf("alice's latest row: %v %v, want the delete", ok, err)
	}
}

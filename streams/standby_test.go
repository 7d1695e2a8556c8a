package streams

import (
	"errors"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
)

// TestStandbyKeepsUp runs two instances with one standby replica each:
// every stateful task runs active on one instance and standby on the
// other, never both on one, and a stale query on either instance reads
// every word's true count, from the active task or from the standby. A
// query without StaleStores still refuses the standby's partitions.
func TestStandbyKeepsUp(t *testing.T) {
	t.Parallel()
	for _, protocol := range []GroupProtocol{GroupProtocolClassic, GroupProtocolConsumer} {
		t.Run(map[GroupProtocol]string{GroupProtocolClassic: "classic", GroupProtocolConsumer: "kip848"}[protocol], func(t *testing.T) {
			forEachCluster(t, func(t *testing.T, brokers []string) {
				apps := []*runningApp{
					startApp(t, brokers, t.TempDir(), StandbyReplicas(1), WithGroupProtocol(protocol), ApplicationServer("a:1")),
					startApp(t, brokers, t.TempDir(), StandbyReplicas(1), WithGroupProtocol(protocol), ApplicationServer("b:1")),
				}
				truth := produceLines(t, brokers, 3000, 5)
				latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
				// The counts subtopology has partitions tasks; each
				// instance has each of them, active or standby.
				waitFor(t, "every instance to hold every counts task, active or standby", 60*time.Second, func() bool {
					for _, r := range apps {
						if countsTasks(r.app, false)+countsTasks(r.app, true) != partitions {
							return false
						}
					}
					return true
				})
				// Written after the standbys are placed: they apply it.
				for w, n := range produceLines(t, brokers, 1000, 5) {
					truth[w] += n
				}
				latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
				for _, r := range apps {
					stale, err := KeyValueStore[string, int64](r.app, "counts", StaleStores())
					if err != nil {
						t.Fatal(err)
					}
					waitFor(t, "the standbys to have every count", 60*time.Second, func() bool {
						for w, want := range truth {
							if n, _, err := stale.Get(w); err != nil || n != want {
								return false
							}
						}
						return true
					})
					all := make(map[string]int64)
					for kv, err := range stale.All() {
						if err != nil {
							t.Fatal(err)
						}
						all[kv.Key] = kv.Value
					}
					if d := diff(truth, all); d != "" || len(all) != len(truth) {
						t.Fatalf("stale All: %d words, want %d: %s", len(all), len(truth), d)
					}
				}
				if apps[0].app.Metrics().StandbyRecords+apps[1].app.Metrics().StandbyRecords == 0 {
					t.Fatal("the standbys applied no changelog record")
				}
				// A word whose task is standby on an instance: a plain
				// query there refuses it, and the metadata names that
				// instance as its standby host and the other as its owner.
				servers := []string{"a:1", "b:1"}
				checked := false
				for i, r := range apps {
					plain, err := KeyValueStore[string, int64](r.app, "counts")
					if err != nil {
						t.Fatal(err)
					}
					for w := range truth {
						_, _, err := plain.Get(w)
						if err == nil {
							continue
						}
						if !errors.Is(err, ErrNotLocal) {
							t.Fatalf("plain query of %q: %v", w, err)
						}
						md, err := QueryMetadataForKey[string, int64](t.Context(), r.app, "counts", w)
						if err != nil {
							t.Fatal(err)
						}
						if md.Server != servers[1-i] || len(md.Standbys) != 1 || md.Standbys[0] != servers[i] {
							t.Fatalf("metadata of %q: %+v, want server %s and standby %s", w, md, servers[1-i], servers[i])
						}
						checked = true
						break
					}
				}
				if !checked {
					t.Fatal("no word is on a standby")
				}
			})
		})
	}
}

// countsTasks returns how many tasks of the counts subtopology the App
// runs active, or standby.
func countsTasks(a *App, standby bool) int {
	sub, err := a.subOfStore("counts")
	if err != nil {
		panic(err)
	}
	a.local.mu.RLock()
	defer a.local.mu.RUnlock()
	tasks := a.local.running
	if standby {
		tasks = a.local.standby
	}
	n := 0
	for id := range tasks {
		if id.Subtopology == sub {
			n++
		}
	}
	return n
}

// TestStandbyPlacement checks the placement rules on made-up memberships:
// no standby on the active instance, the replicas of a task on distinct
// instances, as many as asked when there are enough instances, and tasks
// without an owner left out.
func TestStandbyPlacement(t *testing.T) {
	a := &App{cfg: config{standbys: 2}, subs: engine.Of(wordCount(t)).Subtopologies("wordcount")}
	repartition := a.subs[1].RepartitionSources[0]
	a.local.partitions = []int32{8, 8}
	a.local.subOf = map[string]int{inputTopic: 0, repartition: 1}
	members := []member{
		{instance: "a", partitions: map[string][]int32{repartition: {0, 1, 2}}},
		{instance: "b", partitions: map[string][]int32{repartition: {3, 4, 5}}},
		{instance: "c", partitions: map[string][]int32{repartition: {6}}},
		{instance: "d"},
	}
	hosts, known := a.standbyPlacement(members)
	owner := func(p int32) string {
		for _, m := range members {
			for _, q := range m.partitions[repartition] {
				if q == p {
					return m.instance
				}
			}
		}
		return ""
	}
	perInstance := make(map[string]int)
	for p := range int32(8) {
		id := processor.TaskID{Subtopology: 1, Partition: p}
		if p == 7 {
			if known[id] || len(hosts[id]) > 0 {
				t.Fatalf("task %s without an owner placed: %v", id, hosts[id])
			}
			continue
		}
		h := hosts[id]
		if len(h) != 2 || h[0] == h[1] {
			t.Fatalf("task %s: standbys %v, want two distinct", id, h)
		}
		for _, in := range h {
			if in == owner(p) {
				t.Fatalf("task %s: standby on its active instance %s", id, in)
			}
			perInstance[in]++
		}
	}
	if len(perInstance) < 3 {
		t.Fatalf("standbys on %d instances only: %v", len(perInstance), perInstance)
	}
	for id := range hosts {
		if id.Subtopology == 0 {
			t.Fatalf("stateless task %s got standbys", id)
		}
	}
}

package streams

import (
	"errors"
	"fmt"
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

// TestWarmupBeforeMove starts a second instance next to one that holds
// all the state (10,000 keys) (classic protocol, the task balancer): the newcomer gets
// its share of the stateless tasks at once, but its counts tasks stay on
// the caught-up instance while it warms them up, and move to it only at a
// probing rebalance, once it is within AcceptableRecoveryLag: it restores
// almost nothing of the changelog.
func TestWarmupBeforeMove(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		opts := []Option{StandbyReplicas(1), WithGroupProtocol(GroupProtocolClassic),
			AcceptableRecoveryLag(100), ProbingRebalanceInterval(2 * time.Second)}
		a := startApp(t, brokers, t.TempDir(), append(opts, ApplicationServer("a:1"))...)
		truth := produceUniqueWords(t, brokers, 10000, 1)
		latest(t, brokers, outputTopic, 120*time.Second, atLeast(truth))
		waitFor(t, "the first instance to run every task", 30*time.Second, func() bool {
			return a.app.Metrics().Tasks == 2*partitions
		})
		b := startApp(t, brokers, t.TempDir(), append(opts, ApplicationServer("b:1"))...)
		waitFor(t, "the newcomer to get tasks", 60*time.Second, func() bool { return b.app.Metrics().Tasks > 0 })
		if n := countsTasks(b.app, false); n != 0 {
			t.Fatalf("the newcomer runs %d counts tasks before it caught up", n)
		}
		waitFor(t, "the newcomer to take counts tasks over after warming up", 90*time.Second, func() bool {
			return countsTasks(b.app, false) == partitions/2 && countsTasks(a.app, false) == partitions/2
		})
		restored := b.app.Metrics().RecordsRestored
		t.Logf("the newcomer restored %d records of a changelog of %d; its standbys and warm-ups applied %d",
			restored, len(truth), b.app.Metrics().StandbyRecords)
		if restored*10 > int64(len(truth)) {
			t.Fatalf("the newcomer restored %d records of %d: it took its tasks before it was warm", restored, len(truth))
		}
		waitFor(t, "every word's count to be queryable", 30*time.Second, func() bool {
			for w := range truth {
				if n, err := queryCount(t, []*runningApp{a, b}, w); err != nil || n != 1 {
					return false
				}
			}
			return true
		})
	})
}

// TestTakeoverGoesToStandby runs three instances with one standby replica
// and a small AcceptableRecoveryLag, and crashes the one running the most
// counts tasks: the task balancer gives each of its counts tasks to the
// instance that kept its standby, which restores (almost) nothing.
func TestTakeoverGoesToStandby(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		opts := []Option{StandbyReplicas(1), WithGroupProtocol(GroupProtocolClassic),
			AcceptableRecoveryLag(10), ProbingRebalanceInterval(time.Second)}
		var apps []*runningApp
		for _, server := range []string{"a:1", "b:1", "c:1"} {
			apps = append(apps, startApp(t, brokers, t.TempDir(), append(opts, ApplicationServer(server))...))
		}
		waitFor(t, "every instance to run tasks", 60*time.Second, func() bool {
			var total int64
			for _, r := range apps {
				if r.app.Metrics().Tasks == 0 {
					return false
				}
				total += r.app.Metrics().Tasks
			}
			return total == 2*partitions
		})
		truth := produceLines(t, brokers, 4000, 5)
		latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		waitFor(t, "every counts task to have a standby", 60*time.Second, func() bool {
			standbys := 0
			for _, r := range apps {
				standbys += countsTasks(r.app, true)
			}
			return standbys == partitions
		})
		// Where each counts task's standby is, and the victim: the
		// instance with the most counts tasks.
		sub, err := apps[0].app.subOfStore("counts")
		if err != nil {
			t.Fatal(err)
		}
		standbyOf := make(map[int32]int)
		victim := 0
		for i, r := range apps {
			r.app.local.mu.RLock()
			for id := range r.app.local.standby {
				if id.Subtopology == sub {
					standbyOf[id.Partition] = i
				}
			}
			r.app.local.mu.RUnlock()
			if countsTasks(r.app, false) > countsTasks(apps[victim].app, false) {
				victim = i
			}
		}
		var moved []int32
		apps[victim].app.local.mu.RLock()
		for id := range apps[victim].app.local.running {
			if id.Subtopology == sub {
				moved = append(moved, id.Partition)
			}
		}
		apps[victim].app.local.mu.RUnlock()
		// Let the standbys catch up with the last commit's writes.
		for _, r := range apps {
			if r == apps[victim] {
				continue
			}
			stale, err := KeyValueStore[string, int64](r.app, "counts", StaleStores())
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the standbys to have the counts", 60*time.Second, func() bool {
				for w, want := range truth {
					if n, _, err := stale.Get(w); err == nil && n < want {
						return false
					}
				}
				return true
			})
		}
		restoredBefore := make([]int64, len(apps))
		for i, r := range apps {
			restoredBefore[i] = r.app.Metrics().RecordsRestored
		}
		apps[victim].crash(t)
		for _, p := range moved {
			heir := apps[standbyOf[p]]
			waitFor(t, fmt.Sprintf("counts task %d to run on its standby's instance", p), 90*time.Second, func() bool {
				heir.app.local.mu.RLock()
				defer heir.app.local.mu.RUnlock()
				_, ok := heir.app.local.running[processor.TaskID{Subtopology: sub, Partition: p}]
				return ok
			})
		}
		var restored int64
		for i, r := range apps {
			if i != victim {
				restored += r.app.Metrics().RecordsRestored - restoredBefore[i]
			}
		}
		t.Logf("counts tasks %v of the crashed instance moved to their standbys' instances, restoring %d records", moved, restored)
		if restored > 100 {
			t.Fatalf("the takeover restored %d records", restored)
		}
	})
}

// TestStandbyMixedGroup runs an instance with standbys (offering the task
// balancer first) next to one without, as in a rolling upgrade: the group
// agrees on the balancer both offer, shares the tasks and counts right.
func TestStandbyMixedGroup(t *testing.T) {
	t.Parallel()
	brokers := kfakeCluster(t)
	a := startApp(t, brokers, t.TempDir(), StandbyReplicas(1), WithGroupProtocol(GroupProtocolClassic))
	b := startApp(t, brokers, t.TempDir(), WithGroupProtocol(GroupProtocolClassic))
	waitFor(t, "both instances to run tasks", 60*time.Second, func() bool {
		return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0
	})
	truth := produceLines(t, brokers, 2000, 5)
	got := latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
	if d := diff(truth, got); d != "" {
		t.Fatalf("counts differ from the truth: %s", d)
	}
}

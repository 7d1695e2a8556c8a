package streams

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
)

// balance runs the task balancer's leader side over made-up members (one
// thread per instance) that own what owned says and report offsets, and
// returns what each member is assigned and its warm-ups.
func balance(t *testing.T, b *taskBalancer, owned map[string]map[string][]int32, offsets map[string]map[string]int64, topics map[string]int32) (map[string]map[string][]int32, map[string][]string) {
	t.Helper()
	var members []kmsg.JoinGroupResponseMember
	for _, id := range slices.Sorted(maps.Keys(owned)) {
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Version = 3
		meta.Topics = slices.Sorted(maps.Keys(topics))
		for _, topic := range slices.Sorted(maps.Keys(owned[id])) {
			o := kmsg.NewConsumerMemberMetadataOwnedPartition()
			o.Topic, o.Partitions = topic, owned[id][topic]
			meta.OwnedPartitions = append(meta.OwnedPartitions, o)
		}
		meta.UserData, _ = json.Marshal(subscription{Instance: id, Offsets: offsets[id]})
		m := kmsg.NewJoinGroupResponseMember()
		m.MemberID, m.ProtocolMetadata = id, meta.AppendTo(nil)
		members = append(members, m)
	}
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		t.Fatal(err)
	}
	assigned := make(map[string]map[string][]int32)
	warmups := make(map[string][]string)
	for _, sa := range b.Balance(cb, topics).IntoSyncAssignment() {
		var ma kmsg.ConsumerMemberAssignment
		if err := ma.ReadFrom(sa.MemberAssignment); err != nil {
			t.Fatal(err)
		}
		assigned[sa.MemberID] = make(map[string][]int32)
		for _, tp := range ma.Topics {
			assigned[sa.MemberID][tp.Topic] = tp.Partitions
		}
		var data assignmentData
		if len(ma.UserData) > 0 {
			if err := json.Unmarshal(ma.UserData, &data); err != nil {
				t.Fatal(err)
			}
		}
		warmups[sa.MemberID] = data.Warmups
	}
	return assigned, warmups
}

// TestTaskBalancer balances the word count's 8 tasks: a newcomer joining
// two owners gets its share (after the owners revoke, in the cooperative
// second round) and the others move as little as they can; a newcomer far
// behind on the counts tasks warms them up while they stay put.
func TestTaskBalancer(t *testing.T) {
	a := &App{cfg: config{standbys: 1, recoveryLag: 100}, subs: engine.Of(wordCount(t)).Subtopologies("wordcount")}
	repartition := a.subs[1].RepartitionSources[0]
	a.local.subOf = map[string]int{inputTopic: 0, repartition: 1}
	a.local.partitions = []int32{partitions, partitions}
	topics := map[string]int32{inputTopic: partitions, repartition: partitions}
	ends := map[processor.TaskID]int64{}
	for p := range int32(partitions) {
		ends[processor.TaskID{Subtopology: 1, Partition: p}] = 1000
	}
	b := &taskBalancer{th: &thread{app: a}, ends: func([]processor.TaskID) map[processor.TaskID]int64 { return ends }}
	caughtUp := map[string]int64{"1_0": 1000, "1_1": 1000, "1_2": 1000, "1_3": 1000}

	owned := map[string]map[string][]int32{
		"a": {inputTopic: {0, 1}, repartition: {0, 1}},
		"b": {inputTopic: {2, 3}, repartition: {2, 3}},
		"c": {},
	}
	offsets := map[string]map[string]int64{"a": caughtUp, "b": caughtUp, "c": caughtUp}
	round1, _ := balance(t, b, owned, offsets, topics)
	round2, _ := balance(t, b, round1, offsets, topics)
	for id, got := range round2 {
		if len(got[repartition]) == 0 || len(got[inputTopic]) == 0 {
			t.Fatalf("member %s has no counts or no stateless task: %v", id, round2)
		}
	}
	moved := 0
	for _, id := range []string{"a", "b"} {
		for topic, ps := range owned[id] {
			for _, p := range ps {
				if !slices.Contains(round2[id][topic], p) {
					moved++
				}
			}
		}
	}
	if moved != 2 {
		t.Fatalf("%d partitions moved, want 2 (one task of each kind to the newcomer): %v", moved, round2)
	}

	// A newcomer with nothing of the counts tasks' state.
	owned = map[string]map[string][]int32{
		"a": {inputTopic: {0, 1, 2, 3}, repartition: {0, 1, 2, 3}},
		"n": {},
	}
	offsets = map[string]map[string]int64{"a": caughtUp}
	assigned, warmups := balance(t, b, owned, offsets, topics)
	if len(assigned["a"][repartition]) != partitions {
		t.Fatalf("the caught-up owner gave counts tasks to a newcomer that lags: %v", assigned)
	}
	if len(warmups["n"]) != partitions/2 {
		t.Fatalf("the newcomer warms up %v, want half the counts tasks", warmups["n"])
	}
	// Caught up (within 100), the newcomer takes its half.
	offsets["n"] = map[string]int64{"1_0": 950, "1_1": 950, "1_2": 950, "1_3": 950}
	round1, _ = balance(t, b, owned, offsets, topics)
	round2, warmups = balance(t, b, round1, offsets, topics)
	if len(round2["n"][repartition]) != partitions/2 || len(warmups["n"]) != 0 {
		t.Fatalf("the caught-up newcomer has counts tasks %v and warm-ups %v", round2["n"][repartition], warmups["n"])
	}
}

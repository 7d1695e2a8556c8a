package streams

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// AcceptableRecoveryLag sets how many changelog records an instance may
// be behind on a task's stores and still count as caught up for it: the
// task balancer moves a stateful task to an instance only when that
// instance is caught up, and otherwise leaves it on its caught-up owner
// and makes the instance a warm-up replica of it. Classic protocol with
// StandbyReplicas only. Default: 10,000 (Kafka Streams'
// acceptable.recovery.lag).
func AcceptableRecoveryLag(n int64) Option { return func(c *config) { c.recoveryLag = n } }

// ProbingRebalanceInterval sets how long after an assignment with warm-up
// replicas an instance keeping them asks for a rebalance (a probing
// rebalance), in which the warm-ups that have caught up take their tasks
// over. Default: 10 minutes (Kafka Streams' probing.rebalance.interval.ms).
func ProbingRebalanceInterval(d time.Duration) Option { return func(c *config) { c.probeInterval = d } }

// taskBalancerProtocol names the task balancer in JoinGroup.
const taskBalancerProtocol = "riffle-streams"

// taskBalancer is the classic protocol's group balancer when the App has
// StandbyReplicas: a sticky, lag-aware assignment of tasks, after KIP-441.
// Each member reports in its subscription's user data its instance and,
// per stateful task, the changelog offset its local state is at (its
// running task's, its standby's, or its checkpoint's). The leader assigns
// whole tasks (every input partition of a task to one member), balanced
// over the instances by their threads; a stateful task goes to an
// instance only if that instance is within AcceptableRecoveryLag of the
// changelog's end, else it stays with the caught-up owner and the
// instance gets it as a warm-up replica, named in its assignment's user
// data, until a probing rebalance. The balancer is cooperative: a task
// moving between members is first revoked from its owner.
type taskBalancer struct {
	th *thread
	// ends, when set, replaces App.changelogEnds (tests).
	ends func([]processor.TaskID) map[processor.TaskID]int64
}

// subscription is the user data of a member's subscription.
type subscription struct {
	Instance string           `json:"instance"`
	Offsets  map[string]int64 `json:"offsets,omitempty"` // task -> changelog offsets summed over its stores
}

// assignmentData is the user data of a member's assignment.
type assignmentData struct {
	Warmups []string `json:"warmups,omitempty"` // tasks to keep warm-up replicas of
}

func (b *taskBalancer) ProtocolName() string { return taskBalancerProtocol }
func (b *taskBalancer) IsCooperative() bool  { return true }

func (b *taskBalancer) JoinGroupMetadata(interests []string, current map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	for _, topic := range slices.Sorted(maps.Keys(current)) {
		owned := kmsg.NewConsumerMemberMetadataOwnedPartition()
		owned.Topic = topic
		owned.Partitions = current[topic]
		meta.OwnedPartitions = append(meta.OwnedPartitions, owned)
	}
	a := b.th.app
	sub := subscription{Instance: a.instanceKey(), Offsets: make(map[string]int64)}
	for id, off := range a.localOffsets() {
		sub.Offsets[id.String()] = off
	}
	meta.UserData, _ = json.Marshal(sub) // a struct of strings and numbers always marshals
	return meta.AppendTo(nil)
}

func (b *taskBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	var kassignment kmsg.ConsumerMemberAssignment
	if err := kassignment.ReadFrom(assignment); err != nil {
		return nil, fmt.Errorf("parse sync assignment: %w", err)
	}
	var data assignmentData
	if len(kassignment.UserData) > 0 {
		if err := json.Unmarshal(kassignment.UserData, &data); err != nil {
			return nil, fmt.Errorf("parse sync assignment's user data: %w", err)
		}
	}
	var warmups []processor.TaskID
	for _, s := range data.Warmups {
		if id, err := parseTaskID(s); err == nil {
			warmups = append(warmups, id)
		}
	}
	b.th.app.standbys.setWarmups(b.th.id, warmups)
	out := make(map[string][]int32, len(kassignment.Topics))
	for _, t := range kassignment.Topics {
		out[t.Topic] = t.Partitions
	}
	return out, nil
}

func (b *taskBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

// balancedMember is a member as the leader balances it.
type balancedMember struct {
	m        *kmsg.JoinGroupResponseMember
	instance string
	owned    map[string][]int32
	tasks    int
}

// balancedInstance is an instance as the leader balances it: its members
// (threads) and offsets.
type balancedInstance struct {
	key     string
	members []*balancedMember
	offsets map[processor.TaskID]int64
	tasks   int
	kind    [2]int // stateless, stateful tasks assigned
	warmups []processor.TaskID
}

// Balance assigns the tasks of the partitions in topics.
func (b *taskBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	a := b.th.app
	byKey := make(map[string]*balancedInstance)
	var members []*balancedMember
	cb.EachMember(func(m *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		var sub subscription
		if json.Unmarshal(meta.UserData, &sub) != nil || sub.Instance == "" {
			sub.Instance = m.MemberID // not a task balancer's subscription: an instance of its own
		}
		bm := &balancedMember{m: m, instance: sub.Instance, owned: make(map[string][]int32)}
		for _, o := range meta.OwnedPartitions {
			bm.owned[o.Topic] = o.Partitions
		}
		members = append(members, bm)
		in := byKey[sub.Instance]
		if in == nil {
			in = &balancedInstance{key: sub.Instance, offsets: make(map[processor.TaskID]int64)}
			byKey[sub.Instance] = in
		}
		in.members = append(in.members, bm)
		for s, off := range sub.Offsets {
			if id, err := parseTaskID(s); err == nil {
				in.offsets[id] = off
			}
		}
	})
	instances := slices.SortedFunc(maps.Values(byKey), func(x, y *balancedInstance) int { return cmp.Compare(x.key, y.key) })

	// The tasks, their partitions and their previous owners.
	subOf := a.local.topics()
	parts := make(map[processor.TaskID][]kmsg.ConsumerMemberAssignmentTopic)
	for topic, n := range topics {
		sub, ok := subOf[topic]
		if !ok {
			continue
		}
		for p := range n {
			id := processor.TaskID{Subtopology: sub, Partition: p}
			t := kmsg.NewConsumerMemberAssignmentTopic()
			t.Topic, t.Partitions = topic, []int32{p}
			parts[id] = append(parts[id], t)
		}
	}
	tasks := slices.SortedFunc(maps.Keys(parts), func(x, y processor.TaskID) int {
		return cmp.Or(cmp.Compare(x.Subtopology, y.Subtopology), cmp.Compare(x.Partition, y.Partition))
	})
	prevMember := make(map[processor.TaskID]*balancedMember)
	for _, bm := range members {
		for topic, ps := range bm.owned {
			if sub, ok := subOf[topic]; ok {
				for _, p := range ps {
					prevMember[processor.TaskID{Subtopology: sub, Partition: p}] = bm
				}
			}
		}
	}
	listEnds := a.changelogEnds
	if b.ends != nil {
		listEnds = b.ends
	}
	ends := listEnds(tasks)
	stateful := func(id processor.TaskID) bool { _, ok := ends[id]; return ok }
	lag := func(in *balancedInstance, id processor.TaskID) int64 {
		if pm := prevMember[id]; pm != nil && pm.instance == in.key {
			return 0
		}
		return ends[id] - in.offsets[id]
	}
	caughtUp := func(in *balancedInstance, id processor.TaskID) bool { return lag(in, id) <= a.cfg.recoveryLag }

	// Stateful and stateless tasks are balanced apart, each kind over the
	// instances by their threads.
	threads := 0
	var kinds [2]int
	kindOf := func(id processor.TaskID) int {
		if stateful(id) {
			return 1
		}
		return 0
	}
	for _, in := range instances {
		threads += len(in.members)
	}
	for _, id := range tasks {
		kinds[kindOf(id)]++
	}
	// An instance keeps up to its share rounded down (floor) and takes up
	// to its share rounded up (room): the remainders go round, and a
	// newcomer is never left without tasks while others keep theirs.
	floor := func(in *balancedInstance, k int) bool {
		return in.kind[k] < kinds[k]*len(in.members)/threads
	}
	room := func(in *balancedInstance, k int) bool {
		return in.kind[k] < (kinds[k]*len(in.members)+threads-1)/threads
	}
	load := func(in *balancedInstance, k int) float64 { return float64(in.kind[k]) / float64(len(in.members)) }
	leastLoaded := func(k int, ok func(*balancedInstance) bool) *balancedInstance {
		var best *balancedInstance
		for _, in := range instances {
			if ok(in) && (best == nil || load(in, k) < load(best, k)) {
				best = in
			}
		}
		return best
	}
	owner := make(map[processor.TaskID]*balancedInstance)
	assign := func(id processor.TaskID, in *balancedInstance) {
		owner[id] = in
		in.tasks++
		in.kind[kindOf(id)]++
	}
	for k := range kinds {
		// Sticky first: a task stays on its instance up to its floor.
		var moving []processor.TaskID
		for _, id := range tasks {
			if kindOf(id) != k {
				continue
			}
			if pm := prevMember[id]; pm != nil && floor(byKey[pm.instance], k) {
				assign(id, byKey[pm.instance])
				continue
			}
			moving = append(moving, id)
		}
		for _, id := range moving {
			// To a caught-up instance with room if there is one (the
			// standby's, when the owner died), the least loaded, its
			// owner among equals; else to the least loaded.
			target := leastLoaded(k, func(in *balancedInstance) bool { return room(in, k) && (k == 0 || caughtUp(in, id)) })
			if pm := prevMember[id]; pm != nil && target != nil {
				if prev := byKey[pm.instance]; prev != target && room(prev, k) && load(prev, k) <= load(target, k) {
					target = prev
				}
			}
			if target == nil {
				target = leastLoaded(k, func(in *balancedInstance) bool { return room(in, k) })
			}
			if target == nil {
				target = leastLoaded(k, func(*balancedInstance) bool { return true })
			}
			if k == 1 && !caughtUp(target, id) {
				// Stay on (or go to) a caught-up instance, and warm the
				// target up meanwhile.
				if keep := leastLoaded(k, func(in *balancedInstance) bool { return caughtUp(in, id) }); keep != nil {
					target.warmups = append(target.warmups, id)
					target = keep
				}
			}
			assign(id, target)
		}
	}

	// Within an instance, tasks stay on their thread while it has room.
	plan := cb.NewPlan()
	for _, id := range tasks {
		in := owner[id]
		limit := (in.tasks + len(in.members) - 1) / len(in.members)
		var bm *balancedMember
		if pm := prevMember[id]; pm != nil && pm.instance == in.key && pm.tasks < limit {
			bm = pm
		} else {
			for _, c := range in.members {
				if bm == nil || c.tasks < bm.tasks {
					bm = c
				}
			}
		}
		bm.tasks++
		for _, t := range parts[id] {
			plan.AddPartitions(bm.m, t.Topic, t.Partitions)
		}
	}
	plan.AdjustCooperative(cb)
	return &taskAssignment{plan: plan, instances: instances}
}

// taskAssignment is a plan with each member's warm-ups in its user data.
type taskAssignment struct {
	plan      *kgo.BalancePlan
	instances []*balancedInstance
}

func (t *taskAssignment) IntoSyncAssignment() []kmsg.SyncGroupRequestGroupAssignment {
	out := t.plan.IntoSyncAssignment()
	warmups := make(map[string][]string)
	for _, in := range t.instances {
		for _, bm := range in.members {
			for _, id := range in.warmups {
				warmups[bm.m.MemberID] = append(warmups[bm.m.MemberID], id.String())
			}
		}
	}
	for i := range out {
		w := warmups[out[i].MemberID]
		if len(w) == 0 {
			continue
		}
		var kassignment kmsg.ConsumerMemberAssignment
		if err := kassignment.ReadFrom(out[i].MemberAssignment); err != nil {
			continue // kgo's own encoding: it reads back
		}
		kassignment.UserData, _ = json.Marshal(assignmentData{Warmups: w})
		out[i].MemberAssignment = kassignment.AppendTo(nil)
	}
	return out
}

// parseTaskID parses a TaskID's String, "<subtopology>_<partition>".
func parseTaskID(s string) (processor.TaskID, error) {
	var id processor.TaskID
	if _, err := fmt.Sscanf(s, "%d_%d", &id.Subtopology, &id.Partition); err != nil {
		return id, fmt.Errorf("task id %q: %w", s, err)
	}
	return id, nil
}

// changelogEnds returns, for each stateful task among tasks, the end
// offsets of its stores' changelog partitions, summed. A task whose ends
// cannot be listed counts as stateless (every instance caught up).
func (a *App) changelogEnds(tasks []processor.TaskID) map[processor.TaskID]int64 {
	_, adm, _ := a.local.admin()
	out := make(map[processor.TaskID]int64)
	if adm == nil {
		return out
	}
	topics := make(map[int][]string)
	var all []string
	for _, sub := range a.subs {
		for _, sc := range sub.Stores {
			if standbyStore(sc) {
				t := state.ChangelogTopic(a.cfg.appID, sc.Name)
				topics[sub.ID] = append(topics[sub.ID], t)
				all = append(all, t)
			}
		}
	}
	if len(all) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	listed, err := adm.ListEndOffsets(ctx, all...)
	if err != nil {
		a.cfg.logger.Warn("list changelog end offsets for the task balancer", "err", err)
		return out
	}
	for _, id := range tasks {
		if len(topics[id.Subtopology]) == 0 {
			continue
		}
		var sum int64
		ok := true
		for _, t := range topics[id.Subtopology] {
			o, found := listed.Lookup(t, id.Partition)
			if !found || o.Err != nil {
				ok = false
				break
			}
			sum += o.Offset
		}
		if ok {
			out[id] = sum
		}
	}
	return out
}

// localOffsets returns, per stateful task this instance has state of, the
// changelog offsets that state is at, summed over the task's stores: a
// running task's or standby's positions, else its checkpoint's.
func (a *App) localOffsets() map[processor.TaskID]int64 {
	out := make(map[processor.TaskID]int64)
	a.local.mu.RLock()
	live := make(map[processor.TaskID]*task)
	maps.Copy(live, a.local.standby)
	maps.Copy(live, a.local.running)
	a.local.mu.RUnlock()
	for _, id := range a.standbyTasks() {
		var offsets map[string]int64
		if tk, ok := live[id]; ok {
			tk.mu.Lock()
			offsets = maps.Clone(tk.changelog)
			tk.mu.Unlock()
		} else {
			cp, err := state.ReadCheckpoint(vfs.Default, filepath.Join(a.cfg.stateDir, a.cfg.appID, id.String()))
			if err != nil || cp == nil {
				continue
			}
			offsets = cp
		}
		var sum int64
		for _, sc := range a.subs[id.Subtopology].Stores {
			if standbyStore(sc) {
				sum += offsets[sc.Name]
			}
		}
		out[id] = sum
	}
	return out
}

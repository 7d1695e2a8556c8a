package group

import (
	"maps"
	"slices"
)

// Server-side assignor names, as members ask for them in
// ConsumerGroupHeartbeat.ServerAssignor.
const (
	assignorUniform = "uniform"
	assignorRange   = "range"
)

// subscription is a member and the partition counts of the existing
// topics it subscribes to.
type subscription struct {
	member string
	topics map[string]int32
}

// assignor computes a target assignment from the members' subscriptions,
// ordered by member id, and the previous target.
type assignor func(subs []subscription, previous map[string]partitions) map[string]partitions

var assignors = map[string]assignor{
	assignorUniform: assignUniform,
	assignorRange:   assignRange,
}

// assignUniform spreads partitions evenly over the members subscribed to
// them and is sticky: a partition stays with its previous member unless
// that member no longer subscribes to it or holds more than its share.
// With identical subscriptions member sizes differ by at most one.
func assignUniform(subs []subscription, previous map[string]partitions) map[string]partitions {
	out := make(map[string]partitions, len(subs))
	if len(subs) == 0 {
		return out
	}
	subscribers := make(map[string][]string)
	counts := make(map[string]int32)
	for _, s := range subs {
		out[s.member] = make(partitions)
		for t, n := range s.topics {
			subscribers[t] = append(subscribers[t], s.member)
			counts[t] = n
		}
	}
	var all []tp
	for _, t := range slices.Sorted(maps.Keys(counts)) {
		slices.Sort(subscribers[t])
		for p := range counts[t] {
			all = append(all, tp{t, p})
		}
	}
	share := (len(all) + len(subs) - 1) / len(subs)
	owner := make(map[tp]string, len(all))
	for _, s := range subs {
		for _, p := range previous[s.member].sorted() {
			n, ok := s.topics[p.topic]
			if ok && p.partition < n && len(out[s.member]) < share {
				out[s.member][p] = struct{}{}
				owner[p] = s.member
			}
		}
	}
	leastLoaded := func(candidates []string) string {
		best := candidates[0]
		for _, m := range candidates[1:] {
			if len(out[m]) < len(out[best]) {
				best = m
			}
		}
		return best
	}
	for _, p := range all {
		if _, ok := owner[p]; ok {
			continue
		}
		m := leastLoaded(subscribers[p.topic])
		out[m][p] = struct{}{}
		owner[p] = m
	}
	// Move partitions from members holding two or more than another
	// subscriber until no such pair remains; each move narrows the gap,
	// so the passes are bounded.
	for range len(all) + 1 {
		moved := false
		for _, p := range all {
			from := owner[p]
			to := leastLoaded(subscribers[p.topic])
			if len(out[from])-len(out[to]) >= 2 {
				delete(out[from], p)
				out[to][p] = struct{}{}
				owner[p] = to
				moved = true
			}
		}
		if !moved {
			break
		}
	}
	return out
}

// assignRange gives each member subscribed to a topic a contiguous range
// of its partitions, members in id order, the first ones one partition
// more when the partitions do not divide evenly; members subscribed to
// topics with equal partition counts get the same partition numbers of
// each, for co-partitioned joins.
func assignRange(subs []subscription, _ map[string]partitions) map[string]partitions {
	out := make(map[string]partitions, len(subs))
	subscribers := make(map[string][]string)
	counts := make(map[string]int32)
	for _, s := range subs {
		out[s.member] = make(partitions)
		for t, n := range s.topics {
			subscribers[t] = append(subscribers[t], s.member)
			counts[t] = n
		}
	}
	for t, members := range subscribers {
		slices.Sort(members)
		k := int32(len(members))
		per, extra := counts[t]/k, counts[t]%k
		next := int32(0)
		for i, m := range members {
			n := per
			if int32(i) < extra {
				n++
			}
			for p := next; p < next+n; p++ {
				out[m][tp{t, p}] = struct{}{}
			}
			next += n
		}
	}
	return out
}

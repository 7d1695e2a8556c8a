package group

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Member epochs with a meaning of their own in ConsumerGroupHeartbeat.
const (
	epochJoin        = 0
	epochLeave       = -1
	epochStaticLeave = -2
)

// partitions is a set of partitions.
type partitions map[tp]struct{}

func (s partitions) sorted() []tp {
	return slices.SortedFunc(maps.Keys(s), tp.compare)
}

// consumerGroup is the state of a group using the consumer protocol of
// KIP-848.
type consumerGroup struct {
	// epoch is the group epoch: it advances whenever membership,
	// subscriptions or the subscribed topics change.
	epoch int32
	// assignmentEpoch is the group epoch the target was computed at.
	assignmentEpoch int32
	assignor        string
	members         map[string]*consumerMember
	// target is the assignment each member is moving towards.
	target map[string]partitions
	// owner is the member each partition is assigned to or being revoked
	// from: a partition is handed to its target member only once free.
	owner map[tp]string
	// subscribed is the partition count of every subscribed topic the
	// target was computed with.
	subscribed map[string]int32
	// targetAt is when the target was last computed (see settlingWindow).
	targetAt time.Time
}

// consumerMember is one member of a consumer group.
type consumerMember struct {
	id            string
	instanceID    *string
	rackID        *string
	clientID      string
	host          string
	epoch         int32
	previousEpoch int32
	rebalance     time.Duration
	topicNames    []string
	regex         *string
	re            *regexp.Regexp
	assignor      string
	// assigned are the partitions the member may own; revoking are those
	// it must give up before it advances to the target epoch; owned are
	// those it last reported owning.
	assigned partitions
	owned    partitions
	revoking partitions
	// assignedAt is the assignment epoch of KIP-1251 of every partition
	// in assigned or revoking: the member epoch at which the member was
	// given it. A commit at an older member epoch is accepted for the
	// partitions the member has held since that epoch.
	assignedAt map[tp]int32
	// sent is the assignment last sent, to send it again only on change.
	sent partitions
	// deadline is when the session expires without a heartbeat; revokeBy
	// bounds a pending revocation by the rebalance timeout.
	deadline time.Time
	timer    *time.Timer
	revokeBy time.Time
	revoke   *time.Timer
	// classic is set for a member that joined with JoinGroup.
	classic *classicProtocol
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{
		assignor: assignorUniform,
		members:  make(map[string]*consumerMember),
		target:   make(map[string]partitions),
		owner:    make(map[tp]string),
	}
}

func (cg *consumerGroup) stopTimers() {
	for _, m := range cg.members {
		m.stopTimers()
	}
}

func (m *consumerMember) stopTimers() {
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.revoke != nil {
		m.revoke.Stop()
	}
}

// state names the group's state as Kafka does for consumer groups.
func (cg *consumerGroup) state() string {
	switch {
	case len(cg.members) == 0:
		return "Empty"
	case cg.assignmentEpoch < cg.epoch:
		return "Assigning"
	}
	for id, m := range cg.members {
		if m.epoch != cg.assignmentEpoch || len(m.revoking) > 0 || !maps.Equal(m.assigned, cg.target[id]) {
			return "Reconciling"
		}
	}
	return "Stable"
}

// subscribedTopics is the union of the members' resolved subscriptions.
func (cg *consumerGroup) subscribedTopics() map[string]bool {
	out := make(map[string]bool)
	for t := range cg.subscribed {
		out[t] = true
	}
	return out
}

// resolve returns the existing topics m subscribes to, by name or regex.
// Internal topics never match a regex.
func (m *consumerMember) resolve(topics map[string]Topic) map[string]int32 {
	out := make(map[string]int32)
	for _, name := range m.topicNames {
		if t, ok := topics[name]; ok {
			out[name] = t.Partitions
		}
	}
	if m.re != nil {
		for name, t := range topics {
			if !strings.HasPrefix(name, "__") && m.re.MatchString(name) {
				out[name] = t.Partitions
			}
		}
	}
	return out
}

func (cg *consumerGroup) byInstance(id string) *consumerMember {
	for _, m := range cg.members {
		if m.instanceID != nil && *m.instanceID == id {
			return m
		}
	}
	return nil
}

// consumerHeartbeat serves ConsumerGroupHeartbeat: joining, heartbeating
// with the owned partitions, and leaving.
func (c *Coordinator) consumerHeartbeat(from Client, req *kmsg.ConsumerGroupHeartbeatRequest) *kmsg.ConsumerGroupHeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	fail := func(err *kerr.Error, msg string) *kmsg.ConsumerGroupHeartbeatResponse {
		resp.ErrorCode = err.Code
		if msg != "" {
			resp.ErrorMessage = &msg
		}
		return resp
	}
	var re *regexp.Regexp
	switch {
	case req.Group == "":
		return fail(kerr.InvalidRequest, "GroupId can't be empty.")
	case len(req.Group) > MaxGroupIDBytes:
		return fail(kerr.InvalidGroupID, "GroupId is longer than "+strconv.Itoa(MaxGroupIDBytes)+" bytes.")
	case req.MemberEpoch < epochStaticLeave:
		return fail(kerr.InvalidRequest, "MemberEpoch is invalid.")
	case req.MemberID == "" && (req.Version >= 1 || req.MemberEpoch != epochJoin):
		return fail(kerr.InvalidRequest, "MemberId can't be empty.")
	case req.MemberEpoch == epochJoin && req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil:
		return fail(kerr.InvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
	case req.ServerAssignor != nil && assignors[*req.ServerAssignor] == nil:
		return fail(kerr.UnsupportedAssignor, "ServerAssignor "+*req.ServerAssignor+" is not supported. Supported assignors: uniform, range.")
	case c.reserved(req.Group):
		return fail(kerr.GroupIDNotFound, "Group "+req.Group+" is not a consumer group.")
	}
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + *req.SubscribedTopicRegex + ")$"); err != nil {
			return fail(kerr.InvalidRegularExpression, "SubscribedTopicRegex "+*req.SubscribedTopicRegex+" is not a valid regular expression: "+err.Error())
		}
	}
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing() {
		return fail(kerr.CoordinatorNotAvailable, "")
	}
	g := c.groups[req.Group]
	switch {
	case g == nil && req.MemberEpoch != epochJoin:
		return fail(kerr.UnknownMemberID, "")
	case g == nil:
		g = &group{name: req.Group, consumer: newConsumerGroup(), offsets: make(map[tp]offset), emptySince: time.Now()}
		c.groups[g.name] = g
	case g.classic != nil && len(g.classic.members) == 0 && len(g.classic.pending) == 0:
		// An empty classic group is upgraded in place, keeping its
		// offsets, as Kafka 4.0 does.
		c.log.Info("upgrading empty classic group to the consumer protocol", "group", g.name)
		g.classic.stopTimers()
		g.consumer = newConsumerGroup()
		g.consumer.epoch, g.consumer.assignmentEpoch = g.classic.generation, g.classic.generation
		g.classic = nil
	case g.classic != nil && req.MemberEpoch == epochJoin:
		if err := c.upgradeClassicLocked(g, topics); err != nil {
			return fail(kerr.GroupIDNotFound, "Group "+req.Group+" is not a consumer group: "+err.Error()+".")
		}
	case g.classic != nil:
		return fail(kerr.UnknownMemberID, "")
	}
	cg := g.consumer
	interval := c.groupConfigDuration(g.name, ConfigHeartbeatInterval, defaultHeartbeatInterval)
	resp.HeartbeatIntervalMillis = int32(interval / time.Millisecond)

	if req.MemberEpoch == epochLeave || req.MemberEpoch == epochStaticLeave {
		m := cg.members[req.MemberID]
		if m == nil {
			return fail(kerr.UnknownMemberID, "")
		}
		// A member leaving gets no heartbeat interval, as in Kafka.
		resp.MemberID, resp.MemberEpoch, resp.HeartbeatIntervalMillis = kmsg.StringPtr(m.id), req.MemberEpoch, 0
		if req.MemberEpoch == epochStaticLeave && m.instanceID != nil {
			// A static member leaving temporarily keeps its partitions
			// until it returns or its session expires.
			m.previousEpoch, m.epoch = m.epoch, epochStaticLeave
			c.armConsumerSession(g, m)
			return resp
		}
		c.removeConsumerMemberLocked(g, m, "left the group")
		c.updateTargetLocked(g, topics)
		return resp
	}

	var m *consumerMember
	if req.MemberEpoch == epochJoin {
		var err *kerr.Error
		if m, err = c.consumerJoinLocked(g, from, req); err != nil {
			return fail(err, "")
		}
	} else {
		m = cg.members[req.MemberID]
		if m == nil {
			return fail(kerr.UnknownMemberID, "")
		}
		if req.MemberEpoch != m.epoch {
			owned := ownedPartitions(req.Topics, topics)
			if req.MemberEpoch != m.previousEpoch || owned == nil || !subset(owned, m.assigned) {
				return fail(kerr.FencedMemberEpoch, "The consumer group member has a greater or smaller member epoch.")
			}
		}
	}
	m.clientID, m.host = from.ClientID, from.Host
	if req.RebalanceTimeoutMillis > 0 {
		m.rebalance = time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	}
	if req.RackID != nil {
		m.rackID = req.RackID
	}
	changed := false
	if req.SubscribedTopicNames != nil && !slices.Equal(req.SubscribedTopicNames, m.topicNames) {
		m.topicNames, changed = slices.Clone(req.SubscribedTopicNames), true
	}
	if req.SubscribedTopicRegex != nil && (m.regex == nil || *m.regex != *req.SubscribedTopicRegex) {
		m.regex, m.re, changed = req.SubscribedTopicRegex, re, true
	}
	if req.ServerAssignor != nil && *req.ServerAssignor != m.assignor {
		m.assignor, changed = *req.ServerAssignor, true
	}
	if changed {
		cg.epoch++
		c.updateTargetLocked(g, topics)
	}
	c.armConsumerSession(g, m)
	if owned := ownedPartitions(req.Topics, topics); owned != nil {
		m.owned = owned
	}
	c.reconcileLocked(g, m)
	if m.reconciling(cg) || time.Since(cg.targetAt) < settlingWindow {
		resp.HeartbeatIntervalMillis = min(resp.HeartbeatIntervalMillis, int32(reconcilingHeartbeatInterval/time.Millisecond))
	}

	resp.MemberID, resp.MemberEpoch = kmsg.StringPtr(m.id), m.epoch
	if req.MemberEpoch == epochJoin || req.Topics != nil || !maps.Equal(m.sent, m.assigned) {
		m.sent = maps.Clone(m.assigned)
		resp.Assignment = &kmsg.ConsumerGroupHeartbeatResponseAssignment{Topics: assignmentByID(m.assigned, topics)}
	}
	return resp
}

// consumerJoinLocked admits a member joining with epoch 0: a new member,
// a member rejoining with its id, or a static member taking over its
// instance id.
func (c *Coordinator) consumerJoinLocked(g *group, from Client, req *kmsg.ConsumerGroupHeartbeatRequest) (*consumerMember, *kerr.Error) {
	cg := g.consumer
	id := req.MemberID
	if id == "" {
		id = newMemberID("")
	}
	m := &consumerMember{
		id: id, instanceID: req.InstanceID, clientID: from.ClientID, host: from.Host,
		rebalance: time.Minute, assignor: assignorUniform,
		assigned: make(partitions), revoking: make(partitions), owned: make(partitions),
	}
	if req.InstanceID != nil {
		if old := cg.byInstance(*req.InstanceID); old != nil {
			if old.epoch != epochStaticLeave && old.id != id {
				return nil, kerr.UnreleasedInstanceID
			}
			// The static member returns under a new id with its
			// assignment, epoch and subscription.
			old.stopTimers()
			delete(cg.members, old.id)
			m.epoch, m.previousEpoch = old.previousEpoch, old.previousEpoch
			m.topicNames, m.regex, m.re, m.assignor = old.topicNames, old.regex, old.re, old.assignor
			m.assigned, m.revoking, m.owned, m.assignedAt = old.assigned, old.revoking, old.owned, old.assignedAt
			for p, owner := range cg.owner {
				if owner == old.id {
					cg.owner[p] = id
				}
			}
			cg.target[id] = cg.target[old.id]
			delete(cg.target, old.id)
			cg.members[id] = m
			c.log.Info("static member rejoined", "group", g.name, "instance", *req.InstanceID, "member", id)
			return m, nil
		}
	}
	if old := cg.members[id]; old != nil {
		// A member that rejoins with epoch 0 starts over.
		c.removeConsumerMemberLocked(g, old, "rejoined with epoch 0")
	}
	cg.members[id] = m
	g.emptySince = time.Time{}
	c.log.Debug("member joined", "group", g.name, "member", id)
	return m, nil
}

// ownedPartitions converts the owned partitions a heartbeat reports; nil
// means the member did not report them.
func ownedPartitions(ts []kmsg.ConsumerGroupHeartbeatRequestTopic, topics map[string]Topic) partitions {
	if ts == nil {
		return nil
	}
	names := make(map[[16]byte]string, len(topics))
	for name, t := range topics {
		names[t.ID] = name
	}
	out := make(partitions)
	for _, t := range ts {
		name, ok := names[t.TopicID]
		if !ok {
			continue
		}
		for _, p := range t.Partitions {
			out[tp{name, p}] = struct{}{}
		}
	}
	return out
}

func subset(a, b partitions) bool {
	for p := range a {
		if _, ok := b[p]; !ok {
			return false
		}
	}
	return true
}

func assignmentByID(s partitions, topics map[string]Topic) []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic {
	out := []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
	for _, p := range s.sorted() {
		t, ok := topics[p.topic]
		if !ok {
			continue
		}
		if n := len(out); n == 0 || out[n-1].TopicID != t.ID {
			out = append(out, kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{TopicID: t.ID})
		}
		last := &out[len(out)-1]
		last.Partitions = append(last.Partitions, p.partition)
	}
	return out
}

// reconcileLocked moves m one step towards its target assignment. First
// the member must stop owning every partition it loses; until it reports
// so, its epoch stays. Then it advances to the assignment epoch and
// receives the partitions of its target that no other member still owns;
// the rest follow at later heartbeats, once released.
func (c *Coordinator) reconcileLocked(g *group, m *consumerMember) {
	cg := g.consumer
	if len(m.revoking) > 0 {
		for p := range m.revoking {
			if _, still := m.owned[p]; still {
				return
			}
		}
		for p := range m.revoking {
			if cg.owner[p] == m.id {
				delete(cg.owner, p)
			}
			delete(m.assignedAt, p)
		}
		m.revoking = make(partitions)
		if m.revoke != nil {
			m.revoke.Stop()
		}
		m.revokeBy = time.Time{}
	}
	target := cg.target[m.id]
	for p := range m.assigned {
		if _, keep := target[p]; !keep {
			m.revoking[p] = struct{}{}
			delete(m.assigned, p)
		}
	}
	if len(m.revoking) > 0 {
		c.armRevocation(g, m)
		return
	}
	if m.epoch != cg.assignmentEpoch {
		m.previousEpoch, m.epoch = m.epoch, cg.assignmentEpoch
	}
	for p := range target {
		if _, ok := m.assigned[p]; ok {
			continue
		}
		if owner, taken := cg.owner[p]; !taken || owner == m.id {
			cg.owner[p] = m.id
			m.assign(p)
		}
	}
}

// reconcilingHeartbeatInterval is the heartbeat interval a member is
// told while its assignment is not yet its target (partitions to revoke,
// or partitions of its target that another member has still to give up)
// and, within settlingWindow of the target's last change, every member.
// The coordinator cannot tell a member that its target changed or that a
// partition became free: the member learns it at its next heartbeat,
// which at the group's interval (5 s by default) would leave partitions
// unconsumed for up to that long. Instances started together are the
// common case: the first to join gets every partition and, told the
// group's interval, would learn only 5 s later that the others joined
// meanwhile. Kafka answers with the group's interval throughout; clients
// (the Java consumer, librdkafka, franz-go) heartbeat at the interval of
// the last response, and none is told a longer one than the group's.
const reconcilingHeartbeatInterval = 100 * time.Millisecond

// settlingWindow is how long after the target assignment changed every
// member is told reconcilingHeartbeatInterval: the time within which
// members started together usually all join (Kafka's classic groups wait
// group.initial.rebalance.delay.ms, 3 s, for them).
const settlingWindow = 3 * time.Second

// reconciling reports whether m's assignment differs from its target:
// partitions to revoke, or partitions of its target it does not have
// yet.
func (m *consumerMember) reconciling(cg *consumerGroup) bool {
	if len(m.revoking) > 0 {
		return true
	}
	for p := range cg.target[m.id] {
		if _, ok := m.assigned[p]; !ok {
			return true
		}
	}
	return false
}

// assign gives p to m at the member's current epoch, its assignment
// epoch.
func (m *consumerMember) assign(p tp) {
	m.assigned[p] = struct{}{}
	if m.assignedAt == nil {
		m.assignedAt = make(map[tp]int32)
	}
	m.assignedAt[p] = m.epoch
}

// updateTargetLocked recomputes the target assignment if the group epoch
// moved past it or the subscribed topics changed.
func (c *Coordinator) updateTargetLocked(g *group, topics map[string]Topic) {
	cg := g.consumer
	subs := make([]subscription, 0, len(cg.members))
	subscribed := make(map[string]int32)
	votes := make(map[string]int)
	for _, id := range slices.Sorted(maps.Keys(cg.members)) {
		m := cg.members[id]
		resolved := m.resolve(topics)
		maps.Copy(subscribed, resolved)
		subs = append(subs, subscription{member: id, topics: resolved})
		votes[m.assignor]++
	}
	if cg.assignmentEpoch == cg.epoch && maps.Equal(subscribed, cg.subscribed) {
		return
	}
	if cg.assignmentEpoch == cg.epoch {
		cg.epoch++
	}
	// The assignor most members ask for wins; ties go to uniform.
	name := assignorUniform
	for _, n := range slices.Sorted(maps.Keys(votes)) {
		if votes[n] > votes[name] {
			name = n
		}
	}
	cg.assignor = name
	cg.target = assignors[name](subs, cg.target)
	cg.subscribed = subscribed
	cg.assignmentEpoch = cg.epoch
	cg.targetAt = time.Now()
	if len(cg.members) == 0 && g.emptySince.IsZero() {
		g.emptySince = time.Now()
	}
	c.persistLocked(g)
	c.log.Debug("target assignment computed", "group", g.name, "epoch", cg.epoch, "assignor", name, "members", len(cg.members))
}

// removeConsumerMemberLocked drops a member and frees its partitions; the
// caller recomputes the target.
func (c *Coordinator) removeConsumerMemberLocked(g *group, m *consumerMember, reason string) {
	cg := g.consumer
	m.stopTimers()
	delete(cg.members, m.id)
	delete(cg.target, m.id)
	for p, owner := range cg.owner {
		if owner == m.id {
			delete(cg.owner, p)
		}
	}
	cg.epoch++
	if len(cg.members) == 0 {
		g.emptySince = time.Now()
	}
	c.log.Info("member removed", "group", g.name, "member", m.id, "reason", reason)
}

// armConsumerSession restarts the member's session timeout, read from the
// group's config at every heartbeat; a classic member brings its own.
func (c *Coordinator) armConsumerSession(g *group, m *consumerMember) {
	session := c.groupConfigDuration(g.name, ConfigSessionTimeout, defaultSessionTimeout)
	if m.classic != nil {
		session = m.classic.session
	}
	m.deadline = time.Now().Add(session)
	if m.timer != nil {
		m.timer.Reset(session)
		return
	}
	m.timer = time.AfterFunc(session, func() { c.expireConsumer(g, m, false) })
}

// armRevocation bounds a revocation by the member's rebalance timeout.
func (c *Coordinator) armRevocation(g *group, m *consumerMember) {
	if !m.revokeBy.IsZero() {
		return
	}
	m.revokeBy = time.Now().Add(m.rebalance)
	if m.revoke != nil {
		m.revoke.Reset(m.rebalance)
		return
	}
	m.revoke = time.AfterFunc(m.rebalance, func() { c.expireConsumer(g, m, true) })
}

// expireConsumer removes a member whose session expired or that did not
// revoke its partitions within the rebalance timeout.
func (c *Coordinator) expireConsumer(g *group, m *consumerMember, revocation bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cg := g.consumer
	if c.groups[g.name] != g || cg == nil || cg.members[m.id] != m {
		return
	}
	reason := "session timeout"
	if revocation {
		if len(m.revoking) == 0 || time.Now().Before(m.revokeBy) {
			return
		}
		reason = "partitions not revoked within the rebalance timeout"
	} else if time.Now().Before(m.deadline) {
		return
	}
	c.removeConsumerMemberLocked(g, m, reason)
	c.updateTargetLocked(g, c.cfg.Topics())
}

// consumerDescribe serves ConsumerGroupDescribe.
func (c *Coordinator) consumerDescribe(req *kmsg.ConsumerGroupDescribeRequest) *kmsg.ConsumerGroupDescribeResponse {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range req.Groups {
		rg := kmsg.NewConsumerGroupDescribeResponseGroup()
		rg.Group = name
		g := c.groups[name]
		switch {
		case g == nil:
			rg.ErrorCode, rg.ErrorMessage = kerr.GroupIDNotFound.Code, errMessage("Group %s not found.", name)
		case g.consumer == nil:
			rg.ErrorCode, rg.ErrorMessage = kerr.GroupIDNotFound.Code, errMessage("Group %s is not a consumer group.", name)
		default:
			cg := g.consumer
			rg.State, rg.Epoch, rg.AssignmentEpoch, rg.AssignorName = cg.state(), cg.epoch, cg.assignmentEpoch, cg.assignor
			for _, id := range slices.Sorted(maps.Keys(cg.members)) {
				m := cg.members[id]
				rm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
				rm.MemberID, rm.InstanceID, rm.RackID, rm.MemberEpoch = m.id, m.instanceID, m.rackID, m.epoch
				rm.ClientID, rm.ClientHost = m.clientID, "/"+m.host
				rm.SubscribedTopics = slices.Clone(m.topicNames)
				if rm.SubscribedTopics == nil {
					rm.SubscribedTopics = []string{}
				}
				rm.SubscribedTopicRegex = m.regex
				if rm.SubscribedTopicRegex == nil {
					rm.SubscribedTopicRegex = kmsg.StringPtr("") // Kafka's answer without a regex
				}
				rm.Assignment = describedAssignment(m.assigned, topics)
				rm.TargetAssignment = describedAssignment(cg.target[id], topics)
				rm.MemberType = 1
				if m.classic != nil {
					rm.MemberType = 0
				}
				rg.Members = append(rg.Members, rm)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func describedAssignment(s partitions, topics map[string]Topic) kmsg.Assignment {
	var a kmsg.Assignment
	a.TopicPartitions = []kmsg.AssignmentTopicPartition{}
	for _, p := range s.sorted() {
		if n := len(a.TopicPartitions); n == 0 || a.TopicPartitions[n-1].Topic != p.topic {
			a.TopicPartitions = append(a.TopicPartitions, kmsg.AssignmentTopicPartition{Topic: p.topic, TopicID: topics[p.topic].ID})
		}
		last := &a.TopicPartitions[len(a.TopicPartitions)-1]
		last.Partitions = append(last.Partitions, p.partition)
	}
	return a
}

package group

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// classicState is the state of a classic group, named as Kafka names it
// in DescribeGroups and ListGroups.
type classicState int8

const (
	stateEmpty classicState = iota
	statePreparing
	stateCompleting
	stateStable
	stateDead
)

func (s classicState) String() string {
	return [...]string{"Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"}[s]
}

// classicGroup is the state of a group using the classic protocol.
type classicGroup struct {
	state        classicState
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*classicMember
	// pending holds member ids handed out with MEMBER_ID_REQUIRED, each
	// with the timer that forgets it if the member never comes back.
	pending map[string]*time.Timer
	// phase bounds PreparingRebalance (members must rejoin) and
	// CompletingRebalance (members must sync) by the rebalance timeout.
	phase *time.Timer
}

// classicMember is one member of a classic group.
type classicMember struct {
	id         string
	instanceID *string
	clientID   string
	host       string
	session    time.Duration
	rebalance  time.Duration
	protocols  []kmsg.JoinGroupRequestProtocol
	assignment []byte
	// join is set while the member waits in JoinGroup, sync while it
	// waits in SyncGroup.
	join chan *kmsg.JoinGroupResponse
	sync chan syncResult
	// deadline is when the session expires without a heartbeat.
	deadline time.Time
	timer    *time.Timer
}

type syncResult struct {
	code       int16
	assignment []byte
}

func newClassicGroup() *classicGroup {
	return &classicGroup{members: make(map[string]*classicMember), pending: make(map[string]*time.Timer)}
}

func (cg *classicGroup) stopTimers() {
	for _, m := range cg.members {
		m.timer.Stop()
		cg.release(m, kerr.CoordinatorNotAvailable.Code)
	}
	for _, t := range cg.pending {
		t.Stop()
	}
	if cg.phase != nil {
		cg.phase.Stop()
	}
}

// release answers the member's waiting JoinGroup or SyncGroup with code.
func (cg *classicGroup) release(m *classicMember, code int16) {
	if m.join != nil {
		r := &kmsg.JoinGroupResponse{ErrorCode: code, Generation: -1, MemberID: m.id}
		m.join <- r
		m.join = nil
	}
	if m.sync != nil {
		m.sync <- syncResult{code: code}
		m.sync = nil
	}
}

func (cg *classicGroup) byInstance(id string) *classicMember {
	for _, m := range cg.members {
		if m.instanceID != nil && *m.instanceID == id {
			return m
		}
	}
	return nil
}

// checkMember finds the member a request names, answering as Kafka does
// for unknown members and fenced static members.
func (cg *classicGroup) checkMember(memberID string, instanceID *string) *kerr.Error {
	if instanceID != nil {
		if m := cg.byInstance(*instanceID); m != nil && m.id != memberID {
			return kerr.FencedInstanceID
		}
	}
	if cg.members[memberID] == nil {
		return kerr.UnknownMemberID
	}
	return nil
}

// supports reports whether a joining member's protocols fit the group:
// same protocol type, and one protocol every member supports.
func (cg *classicGroup) supports(protocolType string, protocols []kmsg.JoinGroupRequestProtocol) bool {
	if protocolType == "" || len(protocols) == 0 {
		return false
	}
	if len(cg.members) == 0 {
		return true
	}
	if protocolType != cg.protocolType {
		return false
	}
	return slices.ContainsFunc(protocols, func(p kmsg.JoinGroupRequestProtocol) bool {
		return cg.allSupport(p.Name)
	})
}

func (cg *classicGroup) allSupport(name string) bool {
	for _, m := range cg.members {
		if !slices.ContainsFunc(m.protocols, func(p kmsg.JoinGroupRequestProtocol) bool { return p.Name == name }) {
			return false
		}
	}
	return true
}

// selectProtocol picks the protocol every member supports that most
// members prefer, breaking ties by the leader's preference.
func (cg *classicGroup) selectProtocol() string {
	votes := make(map[string]int)
	for _, m := range cg.members {
		for _, p := range m.protocols {
			if cg.allSupport(p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, p := range cg.members[cg.leader].protocols {
		if n, ok := votes[p.Name]; ok && (best == "" || n > votes[best]) {
			best = p.Name
		}
	}
	return best
}

// wait makes the member wait in JoinGroup and returns the channel its
// response arrives on.
func (m *classicMember) wait() chan *kmsg.JoinGroupResponse {
	m.join = make(chan *kmsg.JoinGroupResponse, 1)
	return m.join
}

func (m *classicMember) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	return slices.EqualFunc(a, b, func(x, y kmsg.JoinGroupRequestProtocol) bool {
		return x.Name == y.Name && string(x.Metadata) == string(y.Metadata)
	})
}

// subscribedTopics reads the topics in the members' consumer protocol
// metadata, for a group of protocol type "consumer".
func (cg *classicGroup) subscribedTopics() map[string]bool {
	out := make(map[string]bool)
	if cg.protocolType != "consumer" {
		return out
	}
	for _, m := range cg.members {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.metadata(cg.protocol)); err != nil {
			continue
		}
		for _, t := range md.Topics {
			out[t] = true
		}
	}
	return out
}

// joinGroup serves JoinGroup; it waits until the rebalance completes.
func (c *Coordinator) joinGroup(ctx context.Context, from Client, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	fail := func(err *kerr.Error) *kmsg.JoinGroupResponse {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation, resp.MemberID = err.Code, -1, req.MemberID
		return resp
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 {
		rebalance = session
	}
	if err := checkGroupID(req.Group); err != nil {
		return fail(err)
	}
	switch {
	case session <= 0 || session > maxClassicSessionTimeout:
		return fail(kerr.InvalidSessionTimeout)
	case c.reserved(req.Group):
		return fail(kerr.InconsistentGroupProtocol)
	}
	c.mu.Lock()
	if c.closing() {
		c.mu.Unlock()
		return fail(kerr.CoordinatorNotAvailable)
	}
	g := c.groups[req.Group]
	switch {
	case g == nil:
		g = &group{name: req.Group, classic: newClassicGroup(), offsets: make(map[tp]offset), emptySince: time.Now()}
		c.groups[g.name] = g
	case g.consumer != nil && len(g.consumer.members) == 0:
		// An empty consumer group turns classic when a classic member
		// joins it, as Kafka 4.0 converts it.
		c.log.Info("converting empty consumer group to classic", "group", g.name)
		g.consumer.stopTimers()
		g.consumer, g.classic = nil, newClassicGroup()
		g.classic.generation = 0
	case g.consumer != nil:
		resp := c.consumerClassicJoinLocked(g, from, req, session, rebalance)
		c.mu.Unlock()
		return resp
	}
	cg := g.classic
	if cg.state == stateDead {
		c.mu.Unlock()
		return fail(kerr.CoordinatorNotAvailable)
	}
	if !cg.supports(req.ProtocolType, req.Protocols) {
		c.mu.Unlock()
		return fail(kerr.InconsistentGroupProtocol)
	}
	ch, early := c.classicJoinLocked(g, from, req, session, rebalance)
	c.mu.Unlock()
	if early != nil {
		return early
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return fail(kerr.RebalanceInProgress)
	}
}

// classicJoinLocked admits a joining member. It returns either the
// channel on which the member's response arrives when the join phase
// completes, or a response to send at once.
func (c *Coordinator) classicJoinLocked(g *group, from Client, req *kmsg.JoinGroupRequest, session, rebalance time.Duration) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	cg := g.classic
	newMember := func(id string) *classicMember {
		m := &classicMember{
			id: id, instanceID: req.InstanceID, clientID: from.ClientID, host: from.Host,
			session: session, rebalance: rebalance, protocols: req.Protocols,
		}
		cg.members[id] = m
		if len(cg.members) == 1 {
			cg.protocolType = req.ProtocolType
		}
		if cg.leader == "" {
			cg.leader = id
		}
		c.armClassicSession(g, m)
		return m
	}
	errResp := func(err *kerr.Error, memberID string) *kmsg.JoinGroupResponse {
		return &kmsg.JoinGroupResponse{ErrorCode: err.Code, Generation: -1, MemberID: memberID}
	}
	if req.MemberID == "" {
		id := newMemberID(from.ClientID)
		if req.InstanceID != nil {
			if old := cg.byInstance(*req.InstanceID); old != nil {
				return c.replaceStaticLocked(g, old, id, from, req, session, rebalance)
			}
		} else if req.Version >= 4 {
			// KIP-394: the member must come back with the id it is given.
			cg.pending[id] = time.AfterFunc(session, func() { c.expirePending(g, id) })
			return nil, errResp(kerr.MemberIDRequired, id)
		}
		ch := newMember(id).wait()
		c.prepareRebalanceLocked(g, "member "+id+" joined")
		return ch, nil
	}
	if t, ok := cg.pending[req.MemberID]; ok {
		t.Stop()
		delete(cg.pending, req.MemberID)
		ch := newMember(req.MemberID).wait()
		c.prepareRebalanceLocked(g, "member "+req.MemberID+" joined")
		return ch, nil
	}
	if err := cg.checkMember(req.MemberID, req.InstanceID); err != nil {
		return nil, errResp(err, req.MemberID)
	}
	m := cg.members[req.MemberID]
	changed := !sameProtocols(m.protocols, req.Protocols)
	m.protocols, m.session, m.rebalance = req.Protocols, session, rebalance
	c.armClassicSession(g, m)
	if !changed && m.id != cg.leader && (cg.state == stateStable || cg.state == stateCompleting) {
		// Nothing changed for a follower: it gets the current generation.
		return nil, cg.joinResponse(m)
	}
	if m.join != nil {
		// A retried JoinGroup replaces the waiting one.
		m.join <- &kmsg.JoinGroupResponse{ErrorCode: kerr.RebalanceInProgress.Code, Generation: -1, MemberID: m.id}
	}
	ch := m.wait()
	if cg.state == statePreparing {
		c.maybeCompleteJoinLocked(g)
	} else {
		c.prepareRebalanceLocked(g, "member "+m.id+" rejoined")
	}
	return ch, nil
}

// replaceStaticLocked gives a rejoining static member its new member id.
// In a stable group whose protocols it keeps, it resumes its assignment
// without a rebalance (KIP-345); otherwise the group rebalances.
func (c *Coordinator) replaceStaticLocked(g *group, old *classicMember, id string, from Client, req *kmsg.JoinGroupRequest, session, rebalance time.Duration) (chan *kmsg.JoinGroupResponse, *kmsg.JoinGroupResponse) {
	cg := g.classic
	old.timer.Stop()
	cg.release(old, kerr.FencedInstanceID.Code)
	delete(cg.members, old.id)
	m := &classicMember{
		id: id, instanceID: req.InstanceID, clientID: from.ClientID, host: from.Host,
		session: session, rebalance: rebalance, protocols: req.Protocols, assignment: old.assignment,
	}
	cg.members[id] = m
	wasLeader := cg.leader == old.id
	if wasLeader {
		cg.leader = id
	}
	c.armClassicSession(g, m)
	c.log.Info("static member rejoined", "group", g.name, "instance", *req.InstanceID, "member", id)
	if cg.state == stateStable && !wasLeader && sameProtocols(old.protocols, req.Protocols) {
		return nil, cg.joinResponse(m)
	}
	ch := m.wait()
	c.prepareRebalanceLocked(g, "static member "+*req.InstanceID+" rejoined")
	return ch, nil
}

// joinResponse is the JoinGroup answer for m in the current generation;
// the leader also receives every member's metadata.
func (cg *classicGroup) joinResponse(m *classicMember) *kmsg.JoinGroupResponse {
	r := &kmsg.JoinGroupResponse{
		Generation:   cg.generation,
		ProtocolType: kmsg.StringPtr(cg.protocolType),
		Protocol:     kmsg.StringPtr(cg.protocol),
		LeaderID:     cg.leader,
		MemberID:     m.id,
	}
	if m.id == cg.leader {
		for _, id := range slices.Sorted(maps.Keys(cg.members)) {
			o := cg.members[id]
			r.Members = append(r.Members, kmsg.JoinGroupResponseMember{MemberID: o.id, InstanceID: o.instanceID, ProtocolMetadata: o.metadata(cg.protocol)})
		}
	}
	return r
}

// prepareRebalanceLocked starts a rebalance: members have the rebalance
// timeout to rejoin.
func (c *Coordinator) prepareRebalanceLocked(g *group, reason string) {
	cg := g.classic
	if cg.state == stateCompleting {
		for _, m := range cg.members {
			if m.sync != nil {
				m.sync <- syncResult{code: kerr.RebalanceInProgress.Code}
				m.sync = nil
			}
		}
	}
	if cg.state != statePreparing {
		c.log.Debug("preparing rebalance", "group", g.name, "generation", cg.generation, "reason", reason)
		cg.state = statePreparing
		var timeout time.Duration
		for _, m := range cg.members {
			timeout = max(timeout, m.rebalance)
		}
		c.startPhaseLocked(g, timeout)
	}
	c.maybeCompleteJoinLocked(g)
}

// startPhaseLocked bounds the current rebalance phase.
func (c *Coordinator) startPhaseLocked(g *group, timeout time.Duration) {
	cg := g.classic
	if cg.phase != nil {
		cg.phase.Stop()
	}
	state, generation := cg.state, cg.generation
	cg.phase = time.AfterFunc(timeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.groups[g.name] != g || g.classic != cg || cg.state != state || cg.generation != generation {
			return
		}
		if state == statePreparing {
			c.completeJoinLocked(g)
			return
		}
		// Members that did not sync in time leave, and the rest rebalance.
		for _, m := range cg.members {
			if m.sync == nil {
				c.removeClassicMemberLocked(g, m, "did not sync within the rebalance timeout")
			}
		}
		c.prepareRebalanceLocked(g, "members did not sync")
	})
}

// maybeCompleteJoinLocked completes the join phase once every member and
// every handed-out member id has joined.
func (c *Coordinator) maybeCompleteJoinLocked(g *group) {
	cg := g.classic
	if cg.state != statePreparing || len(cg.pending) > 0 {
		return
	}
	for _, m := range cg.members {
		if m.join == nil {
			return
		}
	}
	c.completeJoinLocked(g)
}

// completeJoinLocked ends the join phase: members that did not rejoin are
// removed, the generation advances and every joined member learns it.
func (c *Coordinator) completeJoinLocked(g *group) {
	cg := g.classic
	for _, m := range cg.members {
		if m.join == nil {
			c.removeClassicMemberLocked(g, m, "did not rejoin within the rebalance timeout")
		}
	}
	cg.generation++
	if len(cg.members) == 0 {
		cg.state, cg.protocol, cg.leader = stateEmpty, "", ""
		if cg.phase != nil {
			cg.phase.Stop()
		}
		g.emptySince = time.Now()
		c.persistLocked(g)
		return
	}
	if cg.members[cg.leader] == nil {
		cg.leader = slices.Min(slices.Collect(maps.Keys(cg.members)))
	}
	cg.protocol = cg.selectProtocol()
	cg.state = stateCompleting
	for _, m := range cg.members {
		m.join <- cg.joinResponse(m)
		m.join = nil
		c.armClassicSession(g, m)
	}
	var timeout time.Duration
	for _, m := range cg.members {
		timeout = max(timeout, m.rebalance)
	}
	c.startPhaseLocked(g, timeout)
	c.persistLocked(g)
	c.log.Debug("rebalance joined", "group", g.name, "generation", cg.generation, "members", len(cg.members), "protocol", cg.protocol)
}

// removeClassicMemberLocked drops a member; the caller rebalances.
func (c *Coordinator) removeClassicMemberLocked(g *group, m *classicMember, reason string) {
	cg := g.classic
	m.timer.Stop()
	cg.release(m, kerr.UnknownMemberID.Code)
	delete(cg.members, m.id)
	if cg.leader == m.id {
		cg.leader = ""
		for id := range cg.members {
			cg.leader = id
			break
		}
	}
	c.log.Info("member removed", "group", g.name, "member", m.id, "reason", reason)
}

// armClassicSession restarts the member's session timeout.
func (c *Coordinator) armClassicSession(g *group, m *classicMember) {
	m.deadline = time.Now().Add(m.session)
	if m.timer != nil {
		m.timer.Reset(m.session)
		return
	}
	m.timer = time.AfterFunc(m.session, func() { c.expireClassic(g, m) })
}

// expireClassic removes a member whose session ran out. Members waiting
// in JoinGroup or SyncGroup are bounded by the rebalance timeout instead.
func (c *Coordinator) expireClassic(g *group, m *classicMember) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cg := g.classic
	if c.groups[g.name] != g || cg == nil || cg.members[m.id] != m || time.Now().Before(m.deadline) {
		return
	}
	if m.join != nil || m.sync != nil {
		c.armClassicSession(g, m)
		return
	}
	c.removeClassicMemberLocked(g, m, "session timeout")
	c.prepareRebalanceLocked(g, "member "+m.id+" session expired")
}

// expirePending forgets a member id handed out with MEMBER_ID_REQUIRED
// that never joined.
func (c *Coordinator) expirePending(g *group, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g.classic == nil {
		return
	}
	if _, ok := g.classic.pending[id]; ok {
		delete(g.classic.pending, id)
		c.maybeCompleteJoinLocked(g)
	}
}

// syncGroup serves SyncGroup; followers wait for the leader's assignment.
func (c *Coordinator) syncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	c.mu.Lock()
	code, ch := c.syncLocked(req, resp)
	c.mu.Unlock()
	if ch != nil {
		select {
		case r := <-ch:
			code, resp.MemberAssignment = r.code, r.assignment
		case <-ctx.Done():
			code = kerr.RebalanceInProgress.Code
		}
	}
	resp.ErrorCode = code
	return resp
}

func (c *Coordinator) syncLocked(req *kmsg.SyncGroupRequest, resp *kmsg.SyncGroupResponse) (int16, chan syncResult) {
	if c.closing() {
		return kerr.CoordinatorNotAvailable.Code, nil
	}
	g := c.groups[req.Group]
	if g == nil {
		return kerr.UnknownMemberID.Code, nil
	}
	if g.consumer != nil {
		return c.consumerClassicSyncLocked(g, req, resp), nil
	}
	cg := g.classic
	if err := cg.checkMember(req.MemberID, req.InstanceID); err != nil {
		return err.Code, nil
	}
	if req.Generation != cg.generation {
		return kerr.IllegalGeneration.Code, nil
	}
	if (req.ProtocolType != nil && *req.ProtocolType != cg.protocolType) || (req.Protocol != nil && *req.Protocol != cg.protocol) {
		return kerr.InconsistentGroupProtocol.Code, nil
	}
	resp.ProtocolType, resp.Protocol = kmsg.StringPtr(cg.protocolType), kmsg.StringPtr(cg.protocol)
	m := cg.members[req.MemberID]
	c.armClassicSession(g, m)
	switch cg.state {
	case statePreparing:
		return kerr.RebalanceInProgress.Code, nil
	case stateStable:
		resp.MemberAssignment = m.assignment
		return 0, nil
	case stateCompleting:
	default:
		return kerr.UnknownMemberID.Code, nil
	}
	ch := make(chan syncResult, 1)
	if m.sync != nil {
		m.sync <- syncResult{code: kerr.RebalanceInProgress.Code}
	}
	m.sync = ch
	if m.id != cg.leader {
		return 0, ch
	}
	assigned := make(map[string][]byte, len(req.GroupAssignment))
	for _, a := range req.GroupAssignment {
		assigned[a.MemberID] = a.MemberAssignment
	}
	cg.state = stateStable
	cg.phase.Stop()
	for _, o := range cg.members {
		o.assignment = assigned[o.id]
		if o.sync != nil {
			o.sync <- syncResult{assignment: o.assignment}
			o.sync = nil
		}
	}
	c.persistLocked(g)
	c.log.Debug("group stable", "group", g.name, "generation", cg.generation, "members", len(cg.members))
	return 0, ch
}

// heartbeat serves Heartbeat.
func (c *Coordinator) heartbeat(req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	resp.ErrorCode = c.heartbeatLocked(req)
	return resp
}

func (c *Coordinator) heartbeatLocked(req *kmsg.HeartbeatRequest) int16 {
	if c.closing() {
		return kerr.CoordinatorNotAvailable.Code
	}
	g := c.groups[req.Group]
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	if g.consumer != nil {
		return c.consumerClassicHeartbeatLocked(g, req)
	}
	cg := g.classic
	if err := cg.checkMember(req.MemberID, req.InstanceID); err != nil {
		return err.Code
	}
	if req.Generation != cg.generation {
		return kerr.IllegalGeneration.Code
	}
	c.armClassicSession(g, cg.members[req.MemberID])
	if cg.state == statePreparing {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// leaveGroup serves LeaveGroup, by member id (v0-v2) or by a batch of
// members named by member or instance id (v3+).
func (c *Coordinator) leaveGroup(req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	members := req.Members
	if req.Version < 3 {
		members = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.Group]
	if c.closing() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	if g.consumer != nil {
		c.consumerClassicLeaveLocked(g, members, resp)
		if req.Version < 3 {
			resp.ErrorCode, resp.Members = resp.Members[0].ErrorCode, nil
		}
		return resp
	}
	cg := g.classic
	removed := 0
	for _, lm := range members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = lm.MemberID, lm.InstanceID
		var m *classicMember
		switch {
		case lm.InstanceID != nil:
			m = cg.byInstance(*lm.InstanceID)
			if m != nil && lm.MemberID != "" && m.id != lm.MemberID {
				rm.ErrorCode = kerr.FencedInstanceID.Code
				m = nil
			} else if m == nil {
				rm.ErrorCode = kerr.UnknownMemberID.Code
			}
		default:
			m = cg.members[lm.MemberID]
			if m == nil {
				rm.ErrorCode = kerr.UnknownMemberID.Code
			}
		}
		if m != nil {
			c.removeClassicMemberLocked(g, m, "left the group")
			removed++
		}
		resp.Members = append(resp.Members, rm)
	}
	if req.Version < 3 {
		resp.ErrorCode, resp.Members = resp.Members[0].ErrorCode, nil
	}
	if removed > 0 {
		c.prepareRebalanceLocked(g, "members left")
	}
	return resp
}

package broker

import (
	"context"
	"path/filepath"
	"slices"
	"strings"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/riffle-stream/riffle/broker/internal/share"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareGroups wires the share-group coordinator (KIP-932) into the
// broker: it keeps its state under <data-dir>/share/.
type shareGroups struct {
	c *share.Coordinator
}

// shareLogs serves the broker's partition logs to the share coordinator.
type shareLogs struct{ parts *partitionSet }

func (s shareLogs) Partition(topic string, partition int32) share.Log {
	if p := s.parts.get(topic, partition); p != nil {
		return p.log
	}
	return nil
}

// open starts the coordinator, after the metadata store and the partition
// logs; isConsumerGroup tells it which names the consumer-group
// coordinator holds (nil: none).
func (s *shareGroups) open(b *Broker, isConsumerGroup func(string) bool) error {
	c, err := share.Open(share.Config{
		Dir:             filepath.Join(b.cfg.dataDir, "share"),
		Topics:          func() map[string]share.Topic { return shareTopics(b.meta.Image()) },
		Logs:            shareLogs{b.parts},
		GroupConfig:     func(group string) map[string]string { return groupConfig(b.meta.Image(), group) },
		IsConsumerGroup: isConsumerGroup,
		Logger:          b.log.With("component", "share"),
	})
	if err != nil {
		return err
	}
	s.c = c
	// Topics deleted or recreated while the broker was down take their
	// share state with them.
	c.TopicsChanged()
	return nil
}

func shareTopics(img *metadata.Image) map[string]share.Topic {
	out := make(map[string]share.Topic, len(img.Topics))
	for name, t := range img.Topics {
		out[name] = share.Topic{Name: name, ID: t.ID, Partitions: int32(len(t.Partitions))}
	}
	return out
}

// groupConfig returns the GROUP resource configs set on group.
func groupConfig(img *metadata.Image, group string) map[string]string {
	return img.Configs[metadata.ConfigResource{Type: metadata.ResourceGroup, Name: group}]
}

// versions reports the versions of key the share coordinator serves.
func (s *shareGroups) versions(key int16) (lo, hi int16, ok bool) {
	if s.c == nil || !s.c.Handles(key) {
		return 0, 0, false
	}
	lo, hi = s.c.SupportedVersions(key)
	return lo, hi, true
}

// serve answers a share request: ShareFetch, which long-polls, in the
// background, the others in order on the connection. It returns nil for
// keys the share coordinator does not serve.
func (s *shareGroups) serve(c *conn, hdr requestHeader, req kmsg.Request) *reply {
	if s.c == nil || !s.c.Handles(hdr.key) {
		return nil
	}
	from := share.Client{ConnID: c.id, ClientID: hdr.clientID, Host: c.host}
	if hdr.key == kmsg.ShareFetch.Int16() {
		return c.async(hdr, func(ctx context.Context) kmsg.Response {
			resp := s.c.Handle(ctx, from, req)
			c.b.countShareFetched(resp)
			return resp
		})
	}
	return &reply{hdr: hdr, resp: s.c.Handle(c.ctx, from, req), done: closedDone}
}

// countShareFetched adds the record bytes of a ShareFetch response to
// its topics' bytes out.
func (b *Broker) countShareFetched(resp kmsg.Response) {
	r, ok := resp.(*kmsg.ShareFetchResponse)
	if !ok {
		return
	}
	img := b.meta.Image()
	for _, t := range r.Topics {
		mt := img.TopicsByID[t.TopicID]
		if mt == nil {
			continue
		}
		for _, p := range t.Partitions {
			if part := b.parts.get(mt.Name, p.Partition); part != nil && len(p.Records) > 0 {
				part.counters.bytesOut.Add(float64(len(p.Records)))
			}
		}
	}
}

func (s *shareGroups) topicsChanged() {
	if s.c != nil {
		s.c.TopicsChanged()
	}
}

func (s *shareGroups) connClosed(id uint64) {
	if s.c != nil {
		s.c.ConnClosed(id)
	}
}

func (s *shareGroups) close() error {
	if s.c == nil {
		return nil
	}
	return s.c.Close()
}

// mergeListGroups adds to a ListGroups response, built by the consumer-
// group coordinator, the share groups that pass the request's type (v5)
// and state (v4) filters, matched without regard to case.
func (s *shareGroups) mergeListGroups(req *kmsg.ListGroupsRequest, resp *kmsg.ListGroupsResponse) {
	if s.c == nil {
		return
	}
	matches := func(filter []string, v string) bool {
		return len(filter) == 0 || slices.ContainsFunc(filter, func(f string) bool { return strings.EqualFold(f, v) })
	}
	if !matches(req.TypesFilter, "share") {
		return
	}
	for _, g := range s.c.ListGroups() {
		if !matches(req.StatesFilter, g.State) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.Group, "share", g.State, "share"
		resp.Groups = append(resp.Groups, lg)
	}
}

// mergeDeleteGroups answers, in a DeleteGroups response built by the
// consumer-group coordinator, the groups it did not know: share groups
// are deleted when they have no members (NON_EMPTY_GROUP otherwise).
func (s *shareGroups) mergeDeleteGroups(resp *kmsg.DeleteGroupsResponse) {
	if s.c == nil {
		return
	}
	for i := range resp.Groups {
		rg := &resp.Groups[i]
		if rg.ErrorCode != kerr.GroupIDNotFound.Code {
			continue
		}
		if handled, code := s.c.DeleteGroup(rg.Group); handled {
			rg.ErrorCode = code
		}
	}
}

// isShareGroup reports whether a share group of that name exists, for
// the consumer-group coordinator's name check.
func (s *shareGroups) isShareGroup(group string) bool {
	return s.c != nil && s.c.IsShareGroup(group)
}

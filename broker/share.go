package broker

import (
	"context"
	"path/filepath"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/riffle-stream/riffle/broker/internal/share"
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

// open starts the coordinator; isConsumerGroup tells it which names the
// consumer-group coordinator holds (nil: none).
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
		return c.async(hdr, func(ctx context.Context) kmsg.Response { return s.c.Handle(ctx, from, req) })
	}
	return &reply{hdr: hdr, resp: s.c.Handle(c.ctx, from, req), done: closedDone}
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

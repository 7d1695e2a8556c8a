package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"github.com/riffle-stream/riffle/broker/internal/group"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// extensions are the request handlers beyond the log's own: the consumer
// group coordinator and the share group coordinator. They open after the
// metadata store and close before it.
type extensions struct {
	groups *group.Coordinator
	share  shareGroups
	txn    transactions
	topics atomic.Pointer[map[string]group.Topic]
}

func (e *extensions) open(b *Broker) error {
	e.setTopics(b.meta.Image())
	g, err := group.Open(group.Config{
		Dir:              filepath.Join(b.cfg.dataDir, "groups"),
		Topics:           func() map[string]group.Topic { return *e.topics.Load() },
		GroupConfig:      func(name string) map[string]string { return groupConfig(b.meta.Image(), name) },
		Reserved:         e.share.isShareGroup,
		OffsetsRetention: b.cfg.offsetsRetention,
		Logger:           b.log.With("component", "groups"),
	})
	if err != nil {
		return fmt.Errorf("broker: open group coordinator: %w", err)
	}
	e.groups = g
	if err := e.share.open(b, g.Exists); err != nil {
		return fmt.Errorf("broker: open share coordinator: %w", err)
	}
	if err := e.txn.open(b, g); err != nil {
		return fmt.Errorf("broker: open transaction coordinator: %w", err)
	}
	return nil
}

// setTopics publishes the topic view the group coordinator reads.
func (e *extensions) setTopics(img *metadata.Image) {
	m := make(map[string]group.Topic, len(img.Topics))
	for name, t := range img.Topics {
		m[name] = group.Topic{Name: name, ID: t.ID, Partitions: int32(len(t.Partitions))}
	}
	e.topics.Store(&m)
}

func (e *extensions) topicsChanged(img *metadata.Image) {
	e.setTopics(img)
	if e.groups != nil {
		e.groups.TopicsChanged()
	}
	e.share.topicsChanged()
}

func (e *extensions) versions(key int16) (lo, hi int16, ok bool) {
	if e.groups != nil && e.groups.Handles(key) {
		lo, hi = e.groups.SupportedVersions(key)
		return lo, hi, true
	}
	return e.share.versions(key)
}

// serve hands a request to its coordinator. JoinGroup and SyncGroup wait
// for the rest of the group, so they run in the background; the others
// run in order with the connection's other requests. ListGroups and
// DeleteGroups span both kinds of group.
func (e *extensions) serve(c *conn, hdr requestHeader, req kmsg.Request) *reply {
	if rep := e.share.serve(c, hdr, req); rep != nil {
		return rep
	}
	from := group.Client{ConnID: c.id, ClientID: hdr.clientID, Host: c.host}
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest, *kmsg.SyncGroupRequest:
		return c.async(hdr, func(ctx context.Context) kmsg.Response { return e.groups.Handle(ctx, from, req) })
	case *kmsg.ListGroupsRequest:
		lr := e.groups.Handle(c.ctx, from, req).(*kmsg.ListGroupsResponse)
		e.share.mergeListGroups(r, lr)
		resp = lr
	case *kmsg.DeleteGroupsRequest:
		dr := e.groups.Handle(c.ctx, from, req).(*kmsg.DeleteGroupsResponse)
		e.share.mergeDeleteGroups(dr)
		resp = dr
	default:
		resp = e.groups.Handle(c.ctx, from, req)
	}
	return &reply{hdr: hdr, resp: resp, done: closedDone}
}

func (e *extensions) connClosed(id uint64) {
	if e.groups != nil {
		e.groups.ConnClosed(id)
	}
	e.share.connClosed(id)
}

func (e *extensions) close() error {
	var errs []error
	errs = append(errs, e.txn.close())
	errs = append(errs, e.share.close())
	if e.groups != nil {
		errs = append(errs, e.groups.Close())
	}
	return errors.Join(errs...)
}

package broker

import (
	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type extensions struct{}

func (e *extensions) open(b *Broker) error                                      { return nil }
func (e *extensions) topicsChanged(img *metadata.Image)                         {}
func (e *extensions) versions(key int16) (lo, hi int16, ok bool)                { return 0, 0, false }
func (e *extensions) serve(c *conn, hdr requestHeader, req kmsg.Request) *reply { return nil }
func (e *extensions) connClosed(id uint64)                                      {}
func (e *extensions) close() error                                              { return nil }

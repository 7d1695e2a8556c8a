package broker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxInFlight bounds how many requests of one connection may await their
// responses; the connection stops reading until the oldest is written.
const maxInFlight = 64

// requestHeader is the Kafka request header (v1, or v2 for flexible
// requests): kmsg encodes bodies but leaves the header to the server.
type requestHeader struct {
	key           int16
	version       int16
	correlationID int32
	clientID      string
}

// reply is one response in a connection's ordered queue. A handler fills
// resp at once, or leaves it for a goroutine of its own that closes done.
type reply struct {
	hdr  requestHeader
	resp kmsg.Response // nil: the request has no response (produce, acks=0)
	done chan struct{}
	// release, if set, runs once the response is written or dropped: it
	// recycles buffers the response points into.
	release func()
}

// closedDone is shared by replies that were complete when queued.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// conn serves one client connection: one goroutine reads and handles
// requests in order, another writes the replies in the same order.
type conn struct {
	b      *Broker
	nc     net.Conn
	id     uint64
	host   string
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	replies chan *reply
	frames  bufferCache    // produce request frames
	reads   bufferCache    // bytes fetches read from the logs
	wg      sync.WaitGroup // handler goroutines that complete a reply
}

func (b *Broker) serveConn(ctx context.Context, nc net.Conn, id uint64) {
	host, _, _ := net.SplitHostPort(nc.RemoteAddr().String())
	c := &conn{
		b:       b,
		nc:      nc,
		id:      id,
		host:    host,
		log:     b.log.With("conn", id, "remote", nc.RemoteAddr().String()),
		replies: make(chan *reply, maxInFlight),
		frames:  newBufferCache(),
		reads:   newBufferCache(),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.ctx.Err() == nil {
		c.log.Info("closing connection", "err", err)
	}
	close(c.replies)
	<-writerDone
	c.cancel()
	c.wg.Wait()
	nc.Close()
	b.connClosed(id)
}

// readLoop reads frames until the peer goes away or sends something the
// broker cannot serve; either way the connection is closed.
func (c *conn) readLoop() error {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var sizeBuf [4]byte
	for {
		if _, err := io.ReadFull(r, sizeBuf[:]); err != nil {
			return err
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if size < 8 || size > c.b.cfg.maxRequestBytes {
			return fmt.Errorf("request size %d outside [8, %d] (max request bytes)", size, c.b.cfg.maxRequestBytes)
		}
		buf := c.frames.get(int(size))
		frame := *buf
		if _, err := io.ReadFull(r, frame); err != nil {
			return fmt.Errorf("read request of %d bytes: %w", size, err)
		}
		rep, err := c.handleFrame(frame)
		if err != nil {
			return err
		}
		// A produce request's records are copied into the log before its
		// handler returns and nothing else keeps the frame; other
		// requests may keep slices of it (group member metadata), so
		// their frames are left to the garbage collector.
		if int16(binary.BigEndian.Uint16(frame)) == kmsg.Produce.Int16() {
			c.frames.put(buf)
		}
		if rep == nil {
			continue
		}
		select {
		case c.replies <- rep:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
}

// handleFrame decodes one request and hands it to its handler. It returns
// nil for a request without a response and an error for a frame that
// ends the connection (undecodable, unknown key, unsupported version).
func (c *conn) handleFrame(frame []byte) (*reply, error) {
	br := kbin.Reader{Src: frame}
	hdr := requestHeader{key: br.Int16(), version: br.Int16(), correlationID: br.Int32()}
	if cid := br.NullableString(); cid != nil {
		hdr.clientID = *cid
	}
	if !br.Ok() {
		return nil, errors.New("malformed request header")
	}
	req := kmsg.RequestForKey(hdr.key)
	if req == nil {
		return nil, fmt.Errorf("unknown api key %d", hdr.key)
	}
	minV, maxV, ok := c.b.versions(hdr.key)
	if !ok {
		return nil, fmt.Errorf("unsupported api %s (key %d)", kmsg.NameForKey(hdr.key), hdr.key)
	}
	if hdr.version < minV || hdr.version > maxV {
		if hdr.key == kmsg.ApiVersions.Int16() {
			// KIP-511: answer with a v0 body listing what we support, so
			// the client can retry at a version both sides know.
			hdr.version = 0
			resp := c.b.apiVersions()
			resp.ErrorCode = kerr.UnsupportedVersion.Code
			return &reply{hdr: hdr, resp: resp, done: closedDone}, nil
		}
		return nil, fmt.Errorf("unsupported version %d of %s (supported %d-%d)", hdr.version, kmsg.NameForKey(hdr.key), minV, maxV)
	}
	req.SetVersion(hdr.version)
	body := br.Src
	if req.IsFlexible() {
		skipTags(&br)
		body = br.Src
	}
	if !br.Ok() {
		return nil, fmt.Errorf("malformed %s v%d request header", kmsg.NameForKey(hdr.key), hdr.version)
	}
	if err := req.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w", kmsg.NameForKey(hdr.key), hdr.version, err)
	}
	return c.b.dispatch(c, hdr, req), nil
}

// skipTags consumes a tagged-field section, which request headers carry
// but no header field of ours needs.
func skipTags(br *kbin.Reader) {
	for n := br.Uvarint(); n > 0 && br.Ok(); n-- {
		br.Uvarint()
		br.Span(int(br.Uvarint()))
	}
}

// writeLoop writes replies in request order, flushing when no further
// reply is ready.
func (c *conn) writeLoop() {
	w := bufio.NewWriterSize(c.nc, 64<<10)
	var buf []byte
	failed := false
	for rep := range c.replies {
		<-rep.done
		if !failed && rep.resp != nil {
			buf = appendResponse(buf[:0], rep)
		}
		if rep.release != nil {
			rep.release()
		}
		if failed || rep.resp == nil {
			continue
		}
		if _, err := w.Write(buf); err != nil {
			failed = c.writeFailed(err)
			continue
		}
		if len(c.replies) == 0 {
			if err := w.Flush(); err != nil {
				failed = c.writeFailed(err)
			}
		}
		// Keep the encoding buffer across responses, so fetch responses
		// do not grow a fresh one each time, unless one was outsized.
		if cap(buf) > maxKeptBuffer {
			buf = nil
		}
	}
	if !failed {
		w.Flush()
	}
}

func (c *conn) writeFailed(err error) bool {
	if c.ctx.Err() == nil {
		c.log.Debug("write response", "err", err)
	}
	c.nc.Close()
	c.cancel()
	return true
}

// appendResponse frames a response: size, correlation id, the header's
// tagged fields for flexible responses (never for ApiVersions, whose
// response header is always v0), then the body.
func appendResponse(dst []byte, rep *reply) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = kbin.AppendInt32(dst, rep.hdr.correlationID)
	rep.resp.SetVersion(rep.hdr.version)
	if rep.resp.IsFlexible() && rep.hdr.key != kmsg.ApiVersions.Int16() {
		dst = append(dst, 0)
	}
	dst = rep.resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}

// async returns a reply whose response fn computes in its own goroutine,
// so that a long poll or an fsync wait does not hold up the requests
// behind it on the connection; responses still go out in order.
func (c *conn) async(hdr requestHeader, fn func(ctx context.Context) kmsg.Response) *reply {
	rep := &reply{hdr: hdr, done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(rep.done)
		rep.resp = fn(c.ctx)
	}()
	return rep
}

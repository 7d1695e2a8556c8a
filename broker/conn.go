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
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/semaphore"
)

// maxInFlight bounds how many requests of one connection may await their
// responses; the connection stops reading until the oldest is written.
const maxInFlight = 64

const (
	// smallFrame is the largest request frame read without taking its
	// bytes from the broker-wide QueuedMaxRequestBytes budget: a
	// connection reads one frame at a time, so these cost at most this
	// much per connection.
	smallFrame = 64 << 10
	// frameChunk is how many bytes of a larger frame are taken from the
	// budget and read at a time.
	frameChunk = 1 << 20
	// maxFrameTime bounds how long a request frame may take to arrive
	// once its first byte has, whatever ConnectionsMaxIdle says: Kafka
	// clients give up on a request after 30 seconds by default.
	maxFrameTime = 30 * time.Second
)

// errIdle ends a connection that went ConnectionsMaxIdle without traffic.
var errIdle = errors.New("idle longer than connections.max.idle.ms")

// errPanicked ends a connection whose request panicked in the broker.
var errPanicked = errors.New("request handler panicked")

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
	hdr requestHeader
	// start is when the request was read in full.
	start time.Time
	resp  kmsg.Response // nil: the request has no response (produce, acks=0)
	done  chan struct{}
	// release, if set, runs once the response is written or dropped: it
	// recycles buffers the response points into.
	release func()
	// fetch, for a Fetch, holds the file spans whose placeholders the
	// response's record sets are, once done is closed.
	fetch *fetchData
}

// closedDone is shared by replies that were complete when queued.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// conn serves one client connection: one goroutine reads and handles
// requests in order, another writes the replies in the same order.
type conn struct {
	b  *Broker
	nc net.Conn
	// raw, if not nil, is nc's raw connection, to which fetch responses
	// send record bytes from the segment files (sendfile(2)).
	raw    syscall.RawConn
	id     uint64
	host   string
	log    *slog.Logger
	ctx    context.Context // ends when the connection is closing
	cancel context.CancelFunc

	replies chan *reply
	frames  bufferCache    // produce request frames
	reads   bufferCache    // bytes fetches read from the logs
	wg      sync.WaitGroup // handler goroutines that complete a reply
	// fetches is the budget of bytes of this connection's fetch
	// responses not yet written (FetchMaxBytes).
	fetches *semaphore.Weighted

	lastActive atomic.Int64 // unix nanoseconds of the last request read or response written
	inFlight   atomic.Int64 // replies queued and not yet written
}

func (b *Broker) serveConn(ctx context.Context, nc net.Conn, id uint64, host string) {
	c := &conn{
		b:       b,
		nc:      nc,
		raw:     sendfileConn(nc),
		id:      id,
		host:    host,
		log:     b.log.With("conn", id, "remote", nc.RemoteAddr().String()),
		replies: make(chan *reply, maxInFlight),
		frames:  newBufferCache(),
		reads:   newBufferCache(),
		fetches: semaphore.NewWeighted(int64(b.cfg.fetchMaxBytes)),
	}
	c.lastActive.Store(time.Now().UnixNano())
	c.ctx, c.cancel = context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	if c.ctx.Err() == nil {
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		case errors.Is(err, errIdle):
			c.log.Debug("closing connection", "err", err)
		default:
			c.log.Info("closing connection", "err", err)
		}
	}
	// Whatever ended the reads, the client will not take answers any
	// more: long polls and waits end now rather than at their timeouts.
	c.cancel()
	nc.Close()
	close(c.replies)
	<-writerDone
	c.wg.Wait()
	b.connClosed(id, host)
}

// readLoop reads frames until the peer goes away or sends something the
// broker cannot serve; either way the connection is closed.
func (c *conn) readLoop() error {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		if err := c.awaitRequest(r); err != nil {
			return err
		}
		now := time.Now()
		c.lastActive.Store(now.UnixNano())
		deadline := now.Add(min(c.b.cfg.connMaxIdle, maxFrameTime))
		if err := c.nc.SetReadDeadline(deadline); err != nil {
			return err
		}
		buf, held, err := c.readFrame(r, deadline)
		if err != nil {
			return err
		}
		frame := *buf
		read, key := time.Now(), int16(binary.BigEndian.Uint16(frame))
		rep, err := c.serveFrame(frame)
		if held > 0 {
			c.b.queued.Release(held)
		}
		if err != nil {
			return err
		}
		// A produce request's records are copied into the log before its
		// handler returns and nothing else keeps the frame; other
		// requests may keep slices of it (group member metadata), so
		// their frames are left to the garbage collector.
		if key == kmsg.Produce.Int16() {
			c.frames.put(buf)
		}
		if rep == nil {
			c.b.metrics.requestDone(key, read)
			continue
		}
		rep.start = read
		c.inFlight.Add(1)
		select {
		case c.replies <- rep:
		case <-c.ctx.Done():
			c.drop(rep)
			return c.ctx.Err()
		}
	}
}

// drop releases what a reply the writer will never see holds, once its
// handler is done.
func (c *conn) drop(rep *reply) {
	if rep.release == nil {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		<-rep.done
		rep.release()
	}()
}

// awaitRequest waits for the first byte of the next request. It ends the
// connection once nothing was read or written for ConnectionsMaxIdle
// while no response was pending.
func (c *conn) awaitRequest(r *bufio.Reader) error {
	if r.Buffered() > 0 {
		return nil
	}
	idle := c.b.cfg.connMaxIdle
	for {
		from := time.Unix(0, c.lastActive.Load())
		if c.inFlight.Load() > 0 {
			from = time.Now()
		}
		if err := c.nc.SetReadDeadline(from.Add(idle)); err != nil {
			return err
		}
		_, err := r.Peek(1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		if c.inFlight.Load() == 0 && time.Since(time.Unix(0, c.lastActive.Load())) >= idle {
			return errIdle
		}
	}
}

// readFrame reads one size-prefixed request frame, whose bytes must all
// arrive before deadline. A frame over smallFrame takes its bytes from
// the broker's budget as they arrive, and its buffer grows with them, so
// a client that claims a large frame and sends little costs little; held
// is what the caller must give back to the budget.
func (c *conn) readFrame(r *bufio.Reader, deadline time.Time) (buf *[]byte, held int64, err error) {
	var sizeBuf [4]byte
	if _, err := io.ReadFull(r, sizeBuf[:]); err != nil {
		return nil, 0, fmt.Errorf("read request size: %w", err)
	}
	size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
	if size < 8 || size > c.b.cfg.maxRequestBytes {
		return nil, 0, fmt.Errorf("request size %d outside [8, %d] (max request bytes)", size, c.b.cfg.maxRequestBytes)
	}
	if size <= smallFrame {
		buf = c.frames.get(int(size))
		if _, err := io.ReadFull(r, *buf); err != nil {
			return nil, 0, fmt.Errorf("read request of %d bytes: %w", size, err)
		}
		return buf, 0, nil
	}
	buf = c.frames.get(0)
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	frame := *buf
	for len(frame) < int(size) {
		n := min(int(size)-len(frame), frameChunk)
		if err := c.b.queued.Acquire(ctx, int64(n)); err != nil {
			c.b.queued.Release(held)
			return nil, 0, fmt.Errorf("wait for queued.max.request.bytes to read a request of %d bytes: %w", size, err)
		}
		held += int64(n)
		if cap(frame)-len(frame) < n {
			frame = grow(frame, min(int(size), max(2*cap(frame), len(frame)+n)))
		}
		if _, err := io.ReadFull(r, frame[len(frame):len(frame)+n]); err != nil {
			c.b.queued.Release(held)
			return nil, 0, fmt.Errorf("read request of %d bytes: %w", size, err)
		}
		frame = frame[:len(frame)+n]
	}
	*buf = frame
	return buf, held, nil
}

// grow returns b with a capacity of at least n, its contents kept.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	g := make([]byte, len(b), n)
	copy(g, b)
	return g
}

// serveFrame handles one frame, turning a panic of its handler into the
// end of this connection alone.
func (c *conn) serveFrame(frame []byte) (rep *reply, err error) {
	defer func() {
		if v := recover(); v != nil {
			key, version := int16(binary.BigEndian.Uint16(frame)), int16(binary.BigEndian.Uint16(frame[2:]))
			c.recovered(key, version, v)
			rep, err = nil, errPanicked
		}
	}()
	return c.handleFrame(frame)
}

// recovered logs and counts a panic met serving a request, and closes the
// connection: the broker and its other clients carry on.
func (c *conn) recovered(key, version int16, v any) {
	c.b.panics.Add(1)
	c.log.Error("panic serving request, closing the connection", "api", kmsg.NameForKey(key), "version", version,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	c.cancel()
	c.nc.Close()
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
		if rep.resp != nil {
			// Counted before the client can see them.
			c.b.metrics.responseErrors(rep.hdr.key, rep.resp)
		}
		if !failed && rep.resp != nil {
			failed = !c.writeReply(w, rep, &buf)
		}
		c.b.metrics.requestDone(rep.hdr.key, rep.start)
		if rep.release != nil {
			rep.release()
		}
		c.lastActive.Store(time.Now().UnixNano())
		c.inFlight.Add(-1)
	}
	if !failed {
		w.Flush()
	}
}

// writeReply encodes rep into *buf and writes it. A write that stalls for
// ConnectionsMaxIdle fails. It reports false once the connection failed.
func (c *conn) writeReply(w *bufio.Writer, rep *reply, buf *[]byte) bool {
	var ok bool
	if *buf, ok = c.encode((*buf)[:0], rep); !ok {
		return false
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.b.cfg.connMaxIdle)); err != nil {
		return c.writeFailed(err)
	}
	if rep.fetch != nil && len(rep.fetch.spans) > 0 {
		if err := writeSpliced(w, c.raw, *buf, rep.resp.IsFlexible(), rep.fetch.spans); err != nil {
			return c.writeFailed(fmt.Errorf("write fetch response: %w", err))
		}
	} else if _, err := w.Write(*buf); err != nil {
		return c.writeFailed(err)
	}
	if len(c.replies) == 0 {
		if err := w.Flush(); err != nil {
			return c.writeFailed(err)
		}
	}
	// Keep the encoding buffer across responses, so fetch responses do
	// not grow a fresh one each time, unless one was outsized.
	if cap(*buf) > maxKeptBuffer {
		*buf = nil
	}
	return true
}

// encode appends rep's frame to dst; a response that panics while being
// encoded closes the connection.
func (c *conn) encode(dst []byte, rep *reply) (out []byte, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			c.recovered(rep.hdr.key, rep.hdr.version, v)
			out, ok = dst[:0], false
		}
	}()
	return appendResponse(dst, rep), true
}

// writeFailed closes the connection after a failed write; it returns false.
func (c *conn) writeFailed(err error) bool {
	if c.ctx.Err() == nil {
		c.log.Debug("write response", "err", err)
	}
	c.nc.Close()
	c.cancel()
	return false
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
		defer func() {
			if v := recover(); v != nil {
				rep.resp = nil
				c.recovered(hdr.key, hdr.version, v)
			}
		}()
		rep.resp = fn(c.ctx)
	}()
	return rep
}

package broker

// Hostile clients: requests that panic, connections abandoned mid long
// poll, idle and half-sent frames, connection floods, clients that claim
// huge frames or never read their answers, and fetches asking for no
// bytes. Each test runs a real broker on loopback and talks to it with
// real sockets.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hostileBroker starts a broker on a free loopback port in a fresh
// directory until the test ends. It logs to logs at info level, or to
// stderr at warn level when logs is nil; adjust, if set, changes the
// configuration New built.
func hostileBroker(t testing.TB, logs io.Writer, adjust func(*config), opts ...Opt) *Broker {
	t.Helper()
	level := slog.LevelInfo
	if logs == nil {
		logs, level = os.Stderr, slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})).With("test", t.Name())
	opts = append([]Opt{ListenAddr("127.0.0.1:0"), DataDir(t.TempDir()), Logger(logger)}, opts...)
	b, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(&b.cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return b
}

// wire is a bare client connection: requests encoded by kmsg, sent and
// read with explicit versions.
type wire struct {
	t    testing.TB
	nc   net.Conn
	corr int32
}

func dialWire(t testing.TB, addr string) *wire {
	t.Helper()
	return dialWireFrom(t, nil, addr)
}

// dialWireFrom dials from a chosen local address (nil: any).
func dialWireFrom(t testing.TB, local net.Addr, addr string) *wire {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: local}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &wire{t: t, nc: nc}
}

var formatter = kmsg.NewRequestFormatter(kmsg.FormatterClientID("hostile"))

func (w *wire) send(req kmsg.Request) {
	w.t.Helper()
	w.corr++
	if _, err := w.nc.Write(formatter.AppendRequest(nil, req, w.corr)); err != nil {
		w.t.Fatal(err)
	}
}

// recv reads the next response and decodes it as the answer to req.
func (w *wire) recv(req kmsg.Request) (kmsg.Response, error) {
	var size [4]byte
	if _, err := io.ReadFull(w.nc, size[:]); err != nil {
		return nil, err
	}
	frame := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(w.nc, frame); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	body := frame[4:]
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		body = body[1:]
	}
	return resp, resp.ReadFrom(body)
}

func (w *wire) roundTrip(req kmsg.Request) kmsg.Response {
	w.t.Helper()
	w.send(req)
	resp, err := w.recv(req)
	if err != nil {
		w.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// closed reports whether the broker hung up: a read ends with EOF or a
// reset rather than data or the test's own deadline.
func (w *wire) closed() bool {
	var b [1]byte
	_, err := w.nc.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func apiVersions() *kmsg.ApiVersionsRequest {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "hostile", "1"
	return req
}

// serves asserts that a fresh connection is answered.
func serves(t testing.TB, b *Broker) {
	t.Helper()
	w := dialWire(t, b.Addr())
	w.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if resp := w.roundTrip(apiVersions()).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("api versions: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	w.nc.Close()
}

func createTopicWire(t testing.TB, b *Broker, topic string) {
	t.Helper()
	w := dialWire(t, b.Addr())
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(7)
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 1
	req.Topics, req.TimeoutMillis = append(req.Topics, rt), 5000
	resp := w.roundTrip(req).(*kmsg.CreateTopicsResponse)
	if code := resp.Topics[0].ErrorCode; code != 0 {
		t.Fatalf("create topic %s: %v", topic, kerr.ErrorForCode(code))
	}
	w.nc.Close()
}

// fetchRequest reads partition 0 of topic from offset, by name (v12).
func fetchRequest(topic string, offset int64, maxWait, maxBytes, partitionMaxBytes int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, maxWait, 1, maxBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, partitionMaxBytes, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// produceValues writes n records of size bytes each to topic with a
// well-behaved client.
func produceValues(t testing.TB, b *Broker, topic string, n, size int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rs []*kgo.Record
	for range n {
		rs = append(rs, &kgo.Record{Value: bytes.Repeat([]byte{'x'}, size)})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidated(t *testing.T) {
	for name, opt := range map[string]Opt{
		"retention check 0":               RetentionCheckInterval(0),
		"retention check negative":        RetentionCheckInterval(-time.Second),
		"offsets retention 0":             OffsetsRetention(0),
		"max request bytes 0":             MaxRequestBytes(0),
		"fetch max bytes 0":               FetchMaxBytes(0),
		"default partitions 0":            DefaultPartitions(0),
		"default partitions over the cap": DefaultPartitions(1 << 30),
		"node id negative":                NodeID(-1),
		"sync policy unknown":             Sync(SyncPolicy(7)),
		"logger nil":                      Logger(nil),
		"data dir empty":                  DataDir(""),
		"connections max idle 0":          ConnectionsMaxIdle(0),
		"max connections 0":               MaxConnections(0),
		"max connections per ip negative": MaxConnectionsPerIP(-1),
		"queued below max request":        QueuedMaxRequestBytes(1 << 20),
		"queued negative":                 QueuedMaxRequestBytes(-1),
		"socket send buffer 0":            SocketSendBufferBytes(0),
		"socket receive buffer -2":        SocketReceiveBufferBytes(-2),
		"max topic partitions 0":          MaxTopicPartitions(0),
		"max partitions 0":                MaxPartitions(0),
		"cleaner threads 0":               CleanerThreads(0),
		"cleaner I/O rate negative":       CleanerIOMaxBytesPerSecond(-1),
	} {
		b, err := New(opt)
		if err == nil || b != nil {
			t.Errorf("%s: New returned %v, %v; want an error", name, b, err)
		} else if !strings.HasPrefix(err.Error(), "broker: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
	b, err := New(MaxRequestBytes(512<<20), RetentionCheckInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.queuedMaxRequests != 512<<20 {
		t.Errorf("queued max request bytes %d, want the default raised to max request bytes", b.cfg.queuedMaxRequests)
	}
}

// panickyResponse is a response whose encoding panics.
type panickyResponse struct{ *kmsg.DescribeLogDirsResponse }

func (panickyResponse) AppendTo([]byte) []byte { panic("encoding exploded") }

// TestPanicClosesOnlyItsConnection serves three APIs the broker does not
// serve with handlers that panic inline, in a handler goroutine and while
// the response is encoded: each panic is logged with its stack, counted,
// and closes its own connection only.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	inlineKey, asyncKey, encodeKey := kmsg.DescribeACLs.Int16(), kmsg.ElectLeaders.Int16(), kmsg.DescribeUserSCRAMCredentials.Int16()
	for _, k := range []int16{inlineKey, asyncKey, encodeKey} {
		if _, ok := apis[k]; ok {
			t.Fatalf("api %s is served; pick another for this test", kmsg.NameForKey(k))
		}
	}
	apis[inlineKey] = api{0, 3, func(*Broker, *conn, requestHeader, kmsg.Request) *reply { panic("inline handler exploded") }}
	apis[asyncKey] = api{0, 2, func(_ *Broker, c *conn, hdr requestHeader, _ kmsg.Request) *reply {
		return c.async(hdr, func(context.Context) kmsg.Response { panic("async handler exploded") })
	}}
	apis[encodeKey] = api{0, 0, func(_ *Broker, _ *conn, hdr requestHeader, _ kmsg.Request) *reply {
		return &reply{hdr: hdr, resp: panickyResponse{kmsg.NewPtrDescribeLogDirsResponse()}, done: closedDone}
	}}
	t.Cleanup(func() {
		delete(apis, inlineKey)
		delete(apis, asyncKey)
		delete(apis, encodeKey)
	})
	logs := new(syncBuffer)
	b := hostileBroker(t, logs, nil)
	bystander := dialWire(t, b.Addr())
	bystander.roundTrip(apiVersions())

	reqs := []kmsg.Request{kmsg.NewPtrDescribeACLsRequest(), kmsg.NewPtrElectLeadersRequest(), kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()}
	for i, req := range reqs {
		w := dialWire(t, b.Addr())
		w.roundTrip(apiVersions())
		w.send(req)
		if !w.closed() {
			t.Fatalf("%s: connection still open after its handler panicked", kmsg.NameForKey(req.Key()))
		}
		if got := b.panics.Load(); got != int64(i+1) {
			t.Fatalf("panic count %d after %d panics", got, i+1)
		}
		bystander.roundTrip(apiVersions())
		serves(t, b)
	}
	out := logs.String()
	for _, want := range []string{"inline handler exploded", "async handler exploded", "encoding exploded", "runtime/debug.Stack", "api=ElectLeaders"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestAbandonedLongPollsReleased opens connections that each long-poll an
// empty partition for an hour and hangs up: the broker lets go of every
// goroutine of theirs at once, not when the polls would have ended.
func TestAbandonedLongPollsReleased(t *testing.T) {
	b := hostileBroker(t, nil, nil)
	createTopicWire(t, b, "polls")
	serves(t, b)
	baseline := settledGoroutines()

	const n = 20
	var ws []*wire
	for range n {
		w := dialWire(t, b.Addr())
		w.send(fetchRequest("polls", 0, int32(time.Hour/time.Millisecond), 1<<20, 1<<20))
		ws = append(ws, w)
	}
	// Each connection has a reader, a writer and a polling goroutine.
	if got := goroutinesUntil(func(g int) bool { return g >= baseline+3*n }, 5*time.Second); got < baseline+3*n {
		t.Fatalf("%d goroutines with %d polls in flight, want at least %d", got, n, baseline+3*n)
	}
	for _, w := range ws {
		w.nc.Close()
	}
	start := time.Now()
	if got := goroutinesUntil(func(g int) bool { return g <= baseline }, time.Second); got > baseline {
		t.Fatalf("%d goroutines 1s after the clients hung up, want the baseline %d", got, baseline)
	}
	t.Logf("goroutines back to %d in %v", baseline, time.Since(start))
	b.mu.Lock()
	left := len(b.conns)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d connections still registered", left)
	}
}

// goroutinesUntil polls the goroutine count until ok accepts it or within
// passes, and returns the last count seen.
func goroutinesUntil(ok func(int) bool, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if ok(n) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settledGoroutines waits for the goroutine count to hold still.
func settledGoroutines() int {
	prev := -1
	return goroutinesUntil(func(n int) bool {
		same := n == prev
		prev = n
		time.Sleep(40 * time.Millisecond)
		return same
	}, 2*time.Second)
}

// TestMaxWaitCapped asks for an hour-long poll: it is answered, empty,
// once the broker's cap passes.
func TestMaxWaitCapped(t *testing.T) {
	b := hostileBroker(t, nil, func(c *config) { c.maxWait = 300 * time.Millisecond })
	createTopicWire(t, b, "capped")
	w := dialWire(t, b.Addr())
	start := time.Now()
	resp := w.roundTrip(fetchRequest("capped", 0, int32(time.Hour/time.Millisecond), 1<<20, 1<<20)).(*kmsg.FetchResponse)
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Fatalf("hour-long poll answered after %v, want about the 300ms cap", took)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 {
		t.Fatalf("capped poll: error %v, %d record bytes; want an empty answer", kerr.ErrorForCode(p.ErrorCode), len(p.RecordBatches))
	}
}

func TestIdleConnectionsClosed(t *testing.T) {
	const idle = 400 * time.Millisecond
	b := hostileBroker(t, nil, nil, ConnectionsMaxIdle(idle))
	createTopicWire(t, b, "idle")

	expectClosedAfter := func(t *testing.T, w *wire, start time.Time, lo, hi time.Duration) {
		t.Helper()
		if !w.closed() {
			t.Fatal("the broker did not close the connection")
		}
		if took := time.Since(start); took < lo || took > hi {
			t.Fatalf("closed after %v, want between %v and %v", took, lo, hi)
		}
	}
	t.Run("silent", func(t *testing.T) {
		start := time.Now()
		expectClosedAfter(t, dialWire(t, b.Addr()), start, idle-50*time.Millisecond, idle+2*time.Second)
	})
	t.Run("after a request", func(t *testing.T) {
		w := dialWire(t, b.Addr())
		w.roundTrip(apiVersions())
		start := time.Now()
		expectClosedAfter(t, w, start, idle-50*time.Millisecond, idle+2*time.Second)
	})
	t.Run("size prefix only", func(t *testing.T) {
		w := dialWire(t, b.Addr())
		start := time.Now()
		w.nc.Write([]byte{0, 0, 1, 0})
		expectClosedAfter(t, w, start, idle-50*time.Millisecond, idle+2*time.Second)
	})
	t.Run("frame trickling in", func(t *testing.T) {
		// One byte every 100ms is never idle for 400ms, but the frame as
		// a whole must arrive within the idle time.
		w := dialWire(t, b.Addr())
		start := time.Now()
		frame := formatter.AppendRequest(nil, apiVersions(), 1)
		go func() {
			for _, c := range frame[:len(frame)-1] {
				if _, err := w.nc.Write([]byte{c}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		expectClosedAfter(t, w, start, idle-50*time.Millisecond, idle+2*time.Second)
	})
	t.Run("long poll is not idle", func(t *testing.T) {
		w := dialWire(t, b.Addr())
		start := time.Now()
		resp := w.roundTrip(fetchRequest("idle", 0, 1500, 1<<20, 1<<20)).(*kmsg.FetchResponse)
		if took := time.Since(start); took < 1400*time.Millisecond {
			t.Fatalf("poll answered after %v, before its MaxWait", took)
		}
		if resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatal(kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
		}
		w.roundTrip(apiVersions())
	})
	serves(t, b)
}

func TestConnectionLimits(t *testing.T) {
	logs := new(syncBuffer)
	b := hostileBroker(t, logs, nil, MaxConnections(4), MaxConnectionsPerIP(2))
	local := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip)} }

	a1, a2 := dialWireFrom(t, local("127.0.0.1"), b.Addr()), dialWireFrom(t, local("127.0.0.1"), b.Addr())
	a1.roundTrip(apiVersions())
	a2.roundTrip(apiVersions())
	if a3 := dialWireFrom(t, local("127.0.0.1"), b.Addr()); !a3.closed() {
		t.Fatal("third connection from 127.0.0.1 served, want it closed by max.connections.per.ip=2")
	}
	b1, b2 := dialWireFrom(t, local("127.0.0.2"), b.Addr()), dialWireFrom(t, local("127.0.0.2"), b.Addr())
	b1.roundTrip(apiVersions())
	b2.roundTrip(apiVersions())
	if c1 := dialWireFrom(t, local("127.0.0.3"), b.Addr()); !c1.closed() {
		t.Fatal("fifth connection served, want it closed by max.connections=4")
	}
	a1.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := dialWireFrom(t, local("127.0.0.1"), b.Addr())
		w.send(apiVersions())
		if _, err := w.recv(apiVersions()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a freed slot was not reused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "closed connection at accept"); n != 1 {
		t.Errorf("%d log lines for refused connections within 10s, want 1 (rate-limited):\n%s", n, logs.String())
	}
}

// TestHostileClientsKeepMemoryFlat runs clients that claim 100 MiB frames
// and send them slowly, one that sends 8 MiB of one and stalls, and ones
// that pipeline 64 fetches of 8 MiB without reading: the heap stays under
// a bound far below what they claim, and a well-behaved client is served.
func TestHostileClientsKeepMemoryFlat(t *testing.T) {
	b := hostileBroker(t, nil, nil)
	createTopicWire(t, b, "mem")
	produceValues(t, b, "mem", 256, 64<<10) // 16 MiB to fetch
	before := heapInuse()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	claim := func(sendFast int) {
		w := dialWire(t, b.Addr())
		w.nc.SetDeadline(time.Time{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.nc.Write(binary.BigEndian.AppendUint32(nil, 100<<20))
			w.nc.Write(make([]byte, sendFast))
			chunk := make([]byte, 1<<10)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := w.nc.Write(chunk); err != nil {
					return
				}
			}
		}()
	}
	for range 8 {
		claim(0)
	}
	claim(8 << 20)
	for range 2 {
		w := dialWire(t, b.Addr())
		for range 64 {
			w.send(fetchRequest("mem", 0, 100, 8<<20, 8<<20))
		}
	}

	time.Sleep(time.Second)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("mem"), kgo.RequestTimeoutOverhead(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("polite")}).FirstErr(); err != nil {
		t.Fatalf("well-behaved producer: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("well-behaved produce took %v", took)
	}
	time.Sleep(time.Second)
	grown := int64(heapInuse()) - int64(before)
	t.Logf("heap in use grew by %d MiB under hostile clients claiming 900 MiB of frames and 1 GiB of fetches", grown>>20)
	// One stalled 8 MiB frame (and its buffer's growth), and per
	// pipelining connection one 8 MiB response plus its encoding.
	const bound = 96 << 20
	if grown > bound {
		t.Fatalf("heap in use grew by %d MiB, want at most %d MiB", grown>>20, bound>>20)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestFetchMaxBytesZero asks for no bytes: like Kafka (KIP-74) the broker
// returns the first batch anyway, and with nothing to return it waits out
// MaxWait instead of answering an empty response at once.
func TestFetchMaxBytesZero(t *testing.T) {
	b := hostileBroker(t, nil, nil)
	createTopicWire(t, b, "zero")
	produceValues(t, b, "zero", 3, 100)
	w := dialWire(t, b.Addr())
	for _, c := range []struct {
		name                string
		maxBytes, partBytes int32
	}{
		{"max bytes 0", 0, 1 << 20},
		{"max bytes -1", -1, 1 << 20},
		{"partition max bytes 0", 1 << 20, 0},
		{"both 0", 0, 0},
	} {
		resp := w.roundTrip(fetchRequest("zero", 0, 5000, c.maxBytes, c.partBytes)).(*kmsg.FetchResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || len(p.RecordBatches) == 0 {
			t.Fatalf("%s: error %v, %d record bytes; want the first batch", c.name, kerr.ErrorForCode(p.ErrorCode), len(p.RecordBatches))
		}
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(p.RecordBatches); err != nil || batch.FirstOffset != 0 {
			t.Fatalf("%s: first batch %+v, %v", c.name, batch, err)
		}
	}
	start := time.Now()
	resp := w.roundTrip(fetchRequest("zero", 3, 500, 0, 0)).(*kmsg.FetchResponse)
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Fatalf("fetch at the end with MaxBytes 0 answered after %v, want it to wait its MaxWait", took)
	}
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 {
		t.Fatalf("fetch at the end: error %v, %d bytes", kerr.ErrorForCode(p.ErrorCode), len(p.RecordBatches))
	}
}

// FuzzRequest writes arbitrary bytes, a size-prefixed request frame in
// the seeds, to a connection of a real broker and half-closes it: the
// broker must answer or hang up without panicking (recovered panics are
// counted, and fail the input), must let go of the connection at once,
// and must still serve a fresh connection. The seeds are one default
// request per API key and version range end the broker serves, plus the
// committed corpus under testdata/fuzz/FuzzRequest.
func FuzzRequest(f *testing.F) {
	b := hostileBroker(f, nil, func(c *config) { c.maxWait = 100 * time.Millisecond })
	watchHeap(f, 1<<30)
	for key := range int16(200) {
		lo, hi, ok := b.versions(key)
		if !ok {
			continue
		}
		for _, v := range []int16{lo, hi} {
			req := kmsg.RequestForKey(key)
			if d, ok := req.(interface{ Default() }); ok {
				d.Default()
			}
			req.SetVersion(v)
			f.Add(formatter.AppendRequest(nil, req, 1))
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		nc, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(frame); err == nil {
			nc.(*net.TCPConn).CloseWrite()
		}
		if _, err := io.Copy(io.Discard, nc); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the broker held the connection 10s after the client finished sending")
			}
		}
		if n := b.panics.Swap(0); n != 0 {
			t.Fatalf("%d requests panicked (see the log)", n)
		}
		serves(t, b)
	})
}

// watchHeap crashes the process, so that the fuzzer keeps the input at
// hand, once the live heap passes limit: an input that makes the broker
// allocate without bound must not take the machine down with it.
func watchHeap(tb testing.TB, limit uint64) {
	stop := make(chan struct{})
	tb.Cleanup(func() { close(stop) })
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > limit {
				panic(fmt.Sprintf("the broker's live heap reached %d MiB", v>>20))
			}
		}
	}()
}

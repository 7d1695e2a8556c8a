package broker

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"golang.org/x/sync/errgroup"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
)

// partition is one topic partition served by this broker.
type partition struct {
	topic   string
	topicID [16]byte
	index   int32
	// log is nil when its log could not be opened.
	log *commitlog.Log
	// counters are the topic's traffic counters.
	counters *topicCounters
}

// offline reports whether the partition's log is unusable: it could not
// be opened, or a storage error took it offline since. Requests for it
// are answered KAFKA_STORAGE_ERROR and Metadata lists it as offline.
func (p *partition) offline() bool { return p.log == nil || p.log.Err() != nil }

// partitionDir names a partition's log directory, as Kafka does.
func partitionDir(topic string, index int32) string {
	return topic + "-" + strconv.Itoa(int(index))
}

// topicLogs is one topic's partitions, by index. A nil entry is a
// partition whose log is being opened.
type topicLogs struct {
	id    [16]byte
	parts []*partition
	// cfg is the topic's log settings; gen counts its changes, so that a
	// log opened under an older cfg is brought up to date when published.
	cfg commitlog.Config
	gen uint64
	// stopped is set when the topic is removed or the set closes: its
	// openers then publish nothing more.
	stopped bool
	// opening counts the topic's openers in flight.
	opening sync.WaitGroup
}

// partitionSet owns the partition logs. It follows the metadata images it
// is given: reconcile opens the logs of new partitions, reconfigures open
// ones and deletes the logs of topics the metadata log removed. It is the
// only place that creates or deletes a partition directory, and it
// deletes one only for an explicit topic removal: a directory the
// metadata merely does not mention is kept.
//
// New logs are opened in the background, at most openParallelism at a
// time across all topics, and published one by one as they open, so a
// topic of many partitions holds up neither the metadata log nor the
// creation of other topics; await waits for a topic's logs.
type partitionSet struct {
	dir     string
	sync    commitlog.SyncPolicy
	nodeID  int32
	log     *slog.Logger
	metrics *series

	// reconciling serialises reconcile and close.
	reconciling sync.Mutex
	// slots bounds the logs being opened at once.
	slots chan struct{}
	// openers counts the openers of every topic in flight.
	openers sync.WaitGroup

	// mu guards topics, published and closed. It is held only to read or
	// publish entries, never while a log is opened, closed or deleted, so
	// that requests on existing partitions never wait for those.
	mu     sync.RWMutex
	topics map[string]*topicLogs
	// published is closed, and replaced, whenever a log is published.
	published chan struct{}
	closed    bool
}

// idFile records the topic id in each partition directory, as Kafka's
// partition.metadata does, so a recreated topic never reads an old log.
const idFile = "partition.metadata"

// idPrefix starts the line of idFile that holds the topic id, in hex.
const idPrefix = "topic_id: "

// openParallelism bounds how many logs are opened, closed or deleted at
// once: all are mostly fsyncs, small reads and directory listings.
const openParallelism = 8

func newPartitionSet(dir string, policy SyncPolicy, nodeID int32, log *slog.Logger, m *series) *partitionSet {
	sp := commitlog.SyncGroupCommit
	if policy == SyncNone {
		sp = commitlog.SyncNone
	}
	return &partitionSet{
		dir: dir, sync: sp, nodeID: nodeID, log: log, metrics: m,
		slots:     make(chan struct{}, openParallelism),
		topics:    make(map[string]*topicLogs),
		published: make(chan struct{}),
	}
}

// get returns the partition if its log is open, or nil.
func (s *partitionSet) get(topic string, index int32) *partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.topics[topic]
	if t == nil || index < 0 || int(index) >= len(t.parts) || t.parts[index] == nil || t.parts[index].log == nil {
		return nil
	}
	return t.parts[index]
}

// lookup returns the partition of topic as img describes it, or the error
// a request for it gets, as Kafka's replica manager answers: the
// partition is unknown if img does not have it; it is not led here
// (NOT_LEADER_OR_FOLLOWER, so clients refresh metadata and retry) while
// img has it but its log is not open yet, or belongs to another
// incarnation of the topic; and its log is offline (KAFKA_STORAGE_ERROR)
// if it could not be opened. A partition returned is always of the topic
// id img has, and index is within img's partitions of it.
func (s *partitionSet) lookup(img *metadata.Image, topic string, index int32) (*partition, *kerr.Error) {
	mt := img.Topics[topic]
	if mt == nil || index < 0 || int(index) >= len(mt.Partitions) {
		return nil, kerr.UnknownTopicOrPartition
	}
	s.mu.RLock()
	var p *partition
	if t := s.topics[topic]; t != nil && t.id == mt.ID && int(index) < len(t.parts) {
		p = t.parts[index]
	}
	s.mu.RUnlock()
	switch {
	case p == nil:
		return nil, kerr.NotLeaderForPartition
	case p.offline():
		return nil, kerr.KafkaStorageError
	}
	return p, nil
}

// offline returns the indexes of mt's partitions whose logs are offline
// here, or nil if none is.
func (s *partitionSet) offline(mt *metadata.Topic) map[int32]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.topics[mt.Name]
	if t == nil || t.id != mt.ID {
		return nil
	}
	var out map[int32]bool
	for _, p := range t.parts {
		if p != nil && p.offline() {
			if out == nil {
				out = make(map[int32]bool)
			}
			out[p.index] = true
		}
	}
	return out
}

// errSetClosed reports a wait cut short by close.
var errSetClosed = errors.New("partition logs closed")

// await waits until the first n partitions of topic id have their logs
// opened (or found offline), the topic is gone, or ctx ends.
func (s *partitionSet) await(ctx context.Context, topic string, id [16]byte, n int) error {
	for {
		s.mu.RLock()
		t, ch, closed := s.topics[topic], s.published, s.closed
		done := t == nil || t.id != id || (len(t.parts) >= n && !slices.Contains(t.parts[:n], nil))
		s.mu.RUnlock()
		switch {
		case closed:
			return errSetClosed
		case done:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for the logs of topic %q: %w", topic, context.Cause(ctx))
		}
	}
}

// wait waits until every log being opened is open.
func (s *partitionSet) wait() { s.openers.Wait() }

// reconcile brings the logs in line with next, which follows prev in the
// metadata log. It is called from the metadata store's apply path, one
// image at a time. Logs of topics that prev has and next does not are
// deleted; nothing else is. New partitions are opened in the background.
func (s *partitionSet) reconcile(prev, next *metadata.Image) error {
	s.reconciling.Lock()
	defer s.reconciling.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	var errs []error
	for id, t := range prev.TopicsByID {
		if _, ok := next.TopicsByID[id]; !ok {
			errs = append(errs, s.removeTopic(t))
		}
	}
	brokerChanged := false
	for _, name := range []string{"", strconv.Itoa(int(s.nodeID))} {
		r := metadata.ConfigResource{Type: metadata.ResourceBroker, Name: name}
		brokerChanged = brokerChanged || !maps.Equal(prev.Configs[r], next.Configs[r])
	}
	for name, mt := range next.Topics {
		r := metadata.ConfigResource{Type: metadata.ResourceTopic, Name: name}
		reconfigure := brokerChanged || !maps.Equal(prev.Configs[r], next.Configs[r])
		s.mu.RLock()
		t := s.topics[name]
		current := t != nil && t.id == mt.ID && len(t.parts) >= len(mt.Partitions)
		s.mu.RUnlock()
		if current && !reconfigure {
			continue
		}
		var cfg commitlog.Config
		if reconfigure || t == nil || t.id != mt.ID {
			cfg = logConfig(next, s.nodeID, name, s.sync, s.log)
			cfg.OnFsync = s.metrics.observeFsync
		}
		var open []*partition
		s.mu.Lock()
		if t == nil || t.id != mt.ID {
			if t != nil {
				// An incarnation whose removal this set never saw.
				t.stopped = true
			}
			t = &topicLogs{id: mt.ID, cfg: cfg}
			s.topics[name] = t
		} else if reconfigure {
			t.cfg = cfg
			t.gen++
			open = slices.Clone(t.parts)
		}
		from := len(t.parts)
		for len(t.parts) < len(mt.Partitions) {
			t.parts = append(t.parts, nil)
		}
		s.mu.Unlock()
		for _, p := range open {
			if p != nil && p.log != nil {
				p.log.SetConfig(cfg)
			}
		}
		if from < len(mt.Partitions) {
			s.startOpening(name, t, from, len(mt.Partitions))
		}
	}
	return errors.Join(errs...)
}

// startOpening opens the logs of partitions [from, to) of t in the
// background.
func (s *partitionSet) startOpening(name string, t *topicLogs, from, to int) {
	t.opening.Add(1)
	s.openers.Add(1)
	go func() {
		defer s.openers.Done()
		defer t.opening.Done()
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			s.slots <- struct{}{}
			s.mu.RLock()
			stopped := t.stopped
			s.mu.RUnlock()
			if stopped {
				<-s.slots
				break
			}
			wg.Go(func() {
				defer func() { <-s.slots }()
				s.openOne(name, t, int32(i))
			})
		}
		wg.Wait()
	}()
}

// openOne opens one partition's log and publishes it, or the partition
// offline if its log cannot be opened.
func (s *partitionSet) openOne(name string, t *topicLogs, index int32) {
	s.mu.RLock()
	cfg, gen := t.cfg, t.gen
	s.mu.RUnlock()
	p := &partition{topic: name, topicID: t.id, index: index, counters: s.metrics.topic(name)}
	var err error
	if p.log, err = s.open(name, t.id, index, cfg); err != nil {
		s.log.Error("partition offline: its log cannot be opened", "topic", name, "partition", index, "err", err)
	}
	s.mu.Lock()
	if t.stopped {
		s.mu.Unlock()
		if p.log != nil {
			p.log.Close()
		}
		return
	}
	t.parts[index] = p
	stale := t.gen != gen
	cfg = t.cfg
	close(s.published)
	s.published = make(chan struct{})
	s.mu.Unlock()
	if stale && p.log != nil {
		p.log.SetConfig(cfg)
	}
}

// removeTopic deletes the logs of topic t, which the metadata log
// removed: the partitions opened for it and any directory of one of its
// partitions that records its id, or no id at all (a deletion cut short
// by a crash may have removed the id file first). Its openers stop first.
func (s *partitionSet) removeTopic(t *metadata.Topic) error {
	s.mu.Lock()
	tl := s.topics[t.Name]
	if tl != nil && tl.id == t.ID {
		delete(s.topics, t.Name)
		tl.stopped = true
	} else {
		tl = nil
	}
	s.mu.Unlock()
	var open []*partition
	if tl != nil {
		tl.opening.Wait()
		s.mu.RLock()
		open = tl.parts
		s.mu.RUnlock()
	}
	err := inParallel(len(t.Partitions), func(i int) error { return s.removePartition(t, int32(i), open) })
	s.metrics.forgetTopic(t.Name)
	s.log.Info("deleted topic logs", "topic", t.Name, "partitions", len(t.Partitions))
	return err
}

// removePartition deletes one partition log of removed topic t; open are
// the topic's partitions this set had.
func (s *partitionSet) removePartition(t *metadata.Topic, i int32, open []*partition) error {
	if int(i) < len(open) && open[i] != nil && open[i].log != nil {
		if err := open[i].log.Delete(); err != nil {
			return fmt.Errorf("delete %s-%d: %w", t.Name, i, err)
		}
		return nil
	}
	dir := filepath.Join(s.dir, partitionDir(t.Name, i))
	if id, ok, err := readTopicID(dir); errors.Is(err, fs.ErrNotExist) || (ok && id != t.ID) {
		return nil // gone already, or another topic's
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete %s-%d: %w", t.Name, i, err)
	}
	return nil
}

// readTopicID reads the topic id a partition directory records; ok is
// false if the directory has no id file. A missing directory gives
// fs.ErrNotExist.
func readTopicID(dir string) (id [16]byte, ok bool, err error) {
	if _, err := os.Stat(dir); err != nil {
		return id, false, err
	}
	data, err := os.ReadFile(filepath.Join(dir, idFile))
	if errors.Is(err, fs.ErrNotExist) {
		return id, false, nil
	}
	if err != nil {
		return id, false, err
	}
	hexID, found := strings.CutPrefix(strings.TrimSpace(string(data)), idPrefix)
	if n, err := hex.Decode(id[:], []byte(hexID)); !found || err != nil || n != len(id) {
		return id, false, fmt.Errorf("%s: malformed %s %q", dir, idFile, data)
	}
	return id, true, nil
}

// open opens the log of one partition. A directory of that name holding
// another topic's log (its id file names another id) is not this
// partition's: it is moved aside, kept, and a new log is started.
func (s *partitionSet) open(topic string, id [16]byte, index int32, cfg commitlog.Config) (*commitlog.Log, error) {
	dir := filepath.Join(s.dir, partitionDir(topic, index))
	want := []byte(idPrefix + hex.EncodeToString(id[:]) + "\n")
	have, err := os.ReadFile(filepath.Join(dir, idFile))
	switch {
	case err == nil && !bytes.Equal(have, want):
		aside := dir + "." + strings.TrimPrefix(strings.TrimSpace(string(have)), idPrefix) + "-stray"
		s.log.Warn("moving aside the log of an unknown topic with the same name", "dir", dir, "to", aside)
		if err := os.Rename(dir, aside); err != nil {
			return nil, fmt.Errorf("move aside log %s: %w", dir, err)
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read %s: %w", idFile, err)
	}
	l, err := commitlog.Open(dir, cfg)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(have, want) {
		if err := writeFileSync(filepath.Join(dir, idFile), want); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// warnStrays logs the partition directories that img does not account
// for. They are kept: only an explicit topic removal deletes a log.
func (s *partitionSet) warnStrays(img *metadata.Image) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("list log directory", "err", err)
		}
		return
	}
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '-')
		if !e.IsDir() || i < 0 {
			continue
		}
		idx, err := strconv.Atoi(e.Name()[i+1:])
		if err != nil && e.Name()[i+1:] != "stray" {
			continue
		}
		if t, ok := img.Topics[e.Name()[:i]]; err == nil && ok && idx < len(t.Partitions) {
			continue
		}
		s.log.Warn("keeping a log directory that no topic in the metadata has; remove it by hand if it is not needed",
			"dir", filepath.Join(s.dir, e.Name()))
	}
}

// snapshot returns the open partitions.
func (s *partitionSet) snapshot() []*partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*partition
	for _, t := range s.topics {
		for _, p := range t.parts {
			if p != nil && p.log != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// enforceRetention applies retention to every open log, without holding
// the set's lock while segments are deleted.
func (s *partitionSet) enforceRetention(now time.Time) {
	for _, p := range s.snapshot() {
		if err := p.log.EnforceRetention(now); err != nil && !errors.Is(err, commitlog.ErrClosed) {
			s.log.Error("enforce retention", "topic", p.topic, "partition", p.index, "err", err)
		}
	}
}

func (s *partitionSet) close() error {
	s.reconciling.Lock()
	defer s.reconciling.Unlock()
	s.mu.Lock()
	s.closed = true
	for _, t := range s.topics {
		t.stopped = true
	}
	close(s.published)
	s.published = make(chan struct{})
	s.mu.Unlock()
	s.openers.Wait()
	parts := s.snapshot()
	s.mu.Lock()
	s.topics = nil
	s.mu.Unlock()
	return inParallel(len(parts), func(i int) error { return parts[i].log.Close() })
}

// inParallel calls fn(0) to fn(n-1), openParallelism at a time, and
// joins their errors; every call runs whatever the others return.
func inParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var g errgroup.Group
	g.SetLimit(openParallelism)
	for i := range n {
		g.Go(func() error {
			errs[i] = fn(i)
			return nil
		})
	}
	g.Wait()
	return errors.Join(errs...)
}

// writeFileSync writes a small file durably: temp file, fsync, rename,
// fsync of the directory.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

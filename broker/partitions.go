package broker

import (
	"bytes"
	"cmp"
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
	// log is nil when the partition is offline: its log could not be
	// opened, for the reason in offline.
	log     *commitlog.Log
	offline error
}

// partitionDir names a partition's log directory, as Kafka does.
func partitionDir(topic string, index int32) string {
	return topic + "-" + strconv.Itoa(int(index))
}

// topicLogs is the set of published partitions of one topic, by index.
type topicLogs struct {
	id    [16]byte
	parts []*partition
}

// partitionSet owns the partition logs. It follows the metadata images it
// is given: reconcile opens the logs of new partitions, reconfigures open
// ones and deletes the logs of topics the metadata log removed. It is the
// only place that creates or deletes a partition directory, and it
// deletes one only for an explicit topic removal: a directory the
// metadata merely does not mention is kept.
type partitionSet struct {
	dir    string
	sync   commitlog.SyncPolicy
	nodeID int32
	log    *slog.Logger

	// reconciling serialises reconcile and close, which open and close
	// logs outside mu.
	reconciling sync.Mutex

	// mu guards topics and closed. It is held only to read or publish
	// entries, never while a log is opened, closed or deleted, so that
	// requests on existing partitions never wait for those.
	mu     sync.RWMutex
	topics map[string]*topicLogs
	closed bool
}

// idFile records the topic id in each partition directory, as Kafka's
// partition.metadata does, so a recreated topic never reads an old log.
const idFile = "partition.metadata"

// openParallelism bounds how many logs are opened or closed at once:
// both are mostly fsyncs, small reads and directory listings.
const openParallelism = 8

func newPartitionSet(dir string, policy SyncPolicy, nodeID int32, log *slog.Logger) *partitionSet {
	sp := commitlog.SyncGroupCommit
	if policy == SyncNone {
		sp = commitlog.SyncNone
	}
	return &partitionSet{dir: dir, sync: sp, nodeID: nodeID, log: log, topics: make(map[string]*topicLogs)}
}

// get returns the partition if its log is open, or nil.
func (s *partitionSet) get(topic string, index int32) *partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.topics[topic]
	if t == nil || index < 0 || int(index) >= len(t.parts) || t.parts[index].log == nil {
		return nil
	}
	return t.parts[index]
}

// lookup returns the partition of topic as img describes it, or the error
// a request for it gets, as Kafka's replica manager answers: the
// partition is unknown if img does not have it; it is not led here
// (NOT_LEADER_OR_FOLLOWER, so clients refresh metadata and retry) while
// img has it but its log is not published yet, or belongs to another
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
	case p.log == nil:
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
		if p.log == nil {
			if out == nil {
				out = make(map[int32]bool)
			}
			out[p.index] = true
		}
	}
	return out
}

// reconcile brings the logs in line with next, which follows prev in the
// metadata log. It is called from the metadata store's apply path, one
// image at a time. Logs of topics that prev has and next does not are
// deleted; nothing else is. New partitions are opened in parallel
// without holding mu, then published together.
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
	var jobs []*partition
	cfgs := make(map[string]commitlog.Config)
	for name, mt := range next.Topics {
		r := metadata.ConfigResource{Type: metadata.ResourceTopic, Name: name}
		reconfigure := brokerChanged || !maps.Equal(prev.Configs[r], next.Configs[r])
		s.mu.RLock()
		var open []*partition
		if t := s.topics[name]; t != nil && t.id == mt.ID {
			open = t.parts
		}
		s.mu.RUnlock()
		if !reconfigure && len(open) >= len(mt.Partitions) {
			continue
		}
		cfg := logConfig(next, s.nodeID, name, s.sync, s.log)
		cfgs[name] = cfg
		if reconfigure {
			for _, p := range open {
				if p.log != nil {
					p.log.SetConfig(cfg)
				}
			}
		}
		for i := len(open); i < len(mt.Partitions); i++ {
			jobs = append(jobs, &partition{topic: name, topicID: mt.ID, index: int32(i)})
		}
	}
	if len(jobs) == 0 {
		return errors.Join(errs...)
	}
	var g errgroup.Group
	g.SetLimit(openParallelism)
	for _, p := range jobs {
		g.Go(func() error {
			p.log, p.offline = s.open(p.topic, p.topicID, p.index, cfgs[p.topic])
			if p.offline != nil {
				s.log.Error("partition offline: its log cannot be opened", "topic", p.topic, "partition", p.index, "err", p.offline)
			}
			return nil
		})
	}
	g.Wait()
	s.publish(jobs)
	return errors.Join(errs...)
}

// publish makes opened partitions visible, in index order per topic.
func (s *partitionSet) publish(parts []*partition) {
	slices.SortFunc(parts, func(a, b *partition) int {
		return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.index, b.index))
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		for _, p := range parts {
			if p.log != nil {
				p.log.Close()
			}
		}
		return
	}
	for _, p := range parts {
		t := s.topics[p.topic]
		if t == nil || t.id != p.topicID {
			t = &topicLogs{id: p.topicID}
			s.topics[p.topic] = t
		}
		t.parts = append(t.parts, p)
	}
}

// removeTopic deletes the logs of topic t, which the metadata log
// removed: the partitions published for it and any directory of one of
// its partitions that records its id, or no id at all (a deletion cut
// short by a crash may have removed the id file first).
func (s *partitionSet) removeTopic(t *metadata.Topic) error {
	s.mu.Lock()
	var open []*partition
	if tl := s.topics[t.Name]; tl != nil && tl.id == t.ID {
		open = tl.parts
		delete(s.topics, t.Name)
	}
	s.mu.Unlock()
	var errs []error
	for i := range int32(len(t.Partitions)) {
		dir := filepath.Join(s.dir, partitionDir(t.Name, i))
		if int(i) < len(open) && open[i].log != nil {
			if err := open[i].log.Delete(); err != nil {
				errs = append(errs, fmt.Errorf("delete %s-%d: %w", t.Name, i, err))
			}
			continue
		}
		if id, ok, err := readTopicID(dir); errors.Is(err, fs.ErrNotExist) || (ok && id != t.ID) {
			continue // gone already, or another topic's
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("delete %s-%d: %w", t.Name, i, err))
		}
	}
	s.log.Info("deleted topic logs", "topic", t.Name, "partitions", len(t.Partitions))
	return errors.Join(errs...)
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
	hexID, found := strings.CutPrefix(strings.TrimSpace(string(data)), "topic_id: ")
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
	want := []byte("topic_id: " + hex.EncodeToString(id[:]) + "\n")
	have, err := os.ReadFile(filepath.Join(dir, idFile))
	switch {
	case err == nil && !bytes.Equal(have, want):
		aside := dir + "." + strings.TrimPrefix(strings.TrimSpace(string(have)), "topic_id: ") + "-stray"
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
			if p.log != nil {
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
		if err := p.log.EnforceRetention(now); err != nil {
			s.log.Error("enforce retention", "topic", p.topic, "partition", p.index, "err", err)
		}
	}
}

func (s *partitionSet) close() error {
	s.reconciling.Lock()
	defer s.reconciling.Unlock()
	parts := s.snapshot()
	s.mu.Lock()
	s.closed = true
	s.topics = nil
	s.mu.Unlock()
	errs := make([]error, len(parts))
	var g errgroup.Group
	g.SetLimit(openParallelism)
	for i, p := range parts {
		g.Go(func() error {
			errs[i] = p.log.Close()
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

package broker

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
)

// partition is one topic partition served by this broker.
type partition struct {
	topic   string
	topicID [16]byte
	index   int32
	log     *commitlog.Log
}

// topicLogs is the set of open partitions of one topic.
type topicLogs struct {
	id    [16]byte
	parts []*partition
}

// partitionSet owns the partition logs. The metadata image is the source
// of truth: reconcile opens, reconfigures and deletes logs to match it,
// and nothing else creates or removes them.
type partitionSet struct {
	dir  string
	sync commitlog.SyncPolicy
	log  *slog.Logger

	mu     sync.RWMutex
	topics map[string]*topicLogs
	closed bool
}

// idFile records the topic id in each partition directory, as Kafka's
// partition.metadata does, so a recreated topic never reads an old log.
const idFile = "partition.metadata"

func newPartitionSet(dir string, policy SyncPolicy, log *slog.Logger) *partitionSet {
	sp := commitlog.SyncGroupCommit
	if policy == SyncNone {
		sp = commitlog.SyncNone
	}
	return &partitionSet{dir: dir, sync: sp, log: log, topics: make(map[string]*topicLogs)}
}

// get returns the partition, or nil if this broker does not have it.
func (s *partitionSet) get(topic string, index int32) *partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.topics[topic]
	if t == nil || index < 0 || int(index) >= len(t.parts) {
		return nil
	}
	return t.parts[index]
}

// reconcile brings the open logs in line with img. It is called from the
// metadata store's apply goroutine, one image at a time.
func (s *partitionSet) reconcile(img *metadata.Image) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	for name, t := range s.topics {
		if mt, ok := img.Topics[name]; ok && mt.ID == t.id {
			continue
		}
		for _, p := range t.parts {
			if err := p.log.Delete(); err != nil {
				errs = append(errs, fmt.Errorf("delete %s-%d: %w", name, p.index, err))
			}
		}
		delete(s.topics, name)
		s.log.Info("deleted topic logs", "topic", name, "partitions", len(t.parts))
	}
	for name, mt := range img.Topics {
		cfg := logConfig(img, name, s.sync, s.log)
		t := s.topics[name]
		if t == nil {
			t = &topicLogs{id: mt.ID}
			s.topics[name] = t
		}
		for _, p := range t.parts {
			p.log.SetConfig(cfg)
		}
		for i := len(t.parts); i < len(mt.Partitions); i++ {
			p, err := s.open(name, mt.ID, int32(i), cfg)
			if err != nil {
				errs = append(errs, err)
				break
			}
			t.parts = append(t.parts, p)
		}
	}
	errs = append(errs, s.removeStrays(img))
	return errors.Join(errs...)
}

func (s *partitionSet) open(topic string, id [16]byte, index int32, cfg commitlog.Config) (*partition, error) {
	dir := filepath.Join(s.dir, topic+"-"+strconv.Itoa(int(index)))
	idPath := filepath.Join(dir, idFile)
	want := []byte("topic_id: " + hex.EncodeToString(id[:]) + "\n")
	if have, err := os.ReadFile(idPath); err == nil && !bytes.Equal(have, want) {
		// A topic of the same name existed before; its log is not ours.
		s.log.Info("removing log of an older topic with the same name", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove stale log %s: %w", dir, err)
		}
	}
	l, err := commitlog.Open(dir, cfg)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	if err := writeFileSync(idPath, want); err != nil {
		l.Close()
		return nil, err
	}
	return &partition{topic: topic, topicID: id, index: index, log: l}, nil
}

// removeStrays deletes partition directories of topics the image no
// longer has, such as a topic deleted while the broker was down.
func (s *partitionSet) removeStrays(img *metadata.Image) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("list log directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '-')
		if !e.IsDir() || i < 0 {
			continue
		}
		idx, err := strconv.Atoi(e.Name()[i+1:])
		if err != nil {
			continue
		}
		if t := s.topics[e.Name()[:i]]; t != nil && idx < len(t.parts) {
			continue
		}
		if _, ok := img.Topics[e.Name()[:i]]; ok {
			continue // partitions being opened, or whose open failed: keep the data
		}
		s.log.Info("removing log of a deleted topic", "dir", e.Name())
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *partitionSet) enforceRetention(now time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for name, t := range s.topics {
		for _, p := range t.parts {
			if err := p.log.EnforceRetention(now); err != nil {
				s.log.Error("enforce retention", "topic", name, "partition", p.index, "err", err)
			}
		}
	}
}

func (s *partitionSet) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, t := range s.topics {
		for _, p := range t.parts {
			errs = append(errs, p.log.Close())
		}
	}
	s.topics = nil
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

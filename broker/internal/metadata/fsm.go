package metadata

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kbin"
)

// fsm is the raft state machine: it applies frames of records to the
// current image and publishes each new image.
type fsm struct {
	log *slog.Logger
	cur atomic.Pointer[Image]

	// mu serialises publishing with the OnChange calls, so that calls see
	// images in apply order and each call's prev is the previous call's
	// next.
	mu        sync.Mutex
	onChange  func(prev, next *Image)
	clusterID string // the cluster id images must have; "" accepts any
	failed    error  // why the state machine stopped: foreign image, undecodable snapshot
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(log *slog.Logger, clusterID string, onChange func(prev, next *Image)) *fsm {
	f := &fsm{log: log, clusterID: clusterID, onChange: onChange}
	f.cur.Store(emptyImage())
	return f
}

// Apply applies one committed raft entry. It returns the new *Image, or an
// error if the batch was rejected (the image is unchanged) or cannot be
// decoded.
//
// An entry that cannot be decoded (corrupt, or written by a newer Riffle)
// is logged and skipped as a whole, like an entry whose records do not
// fit the image: every replica decides the same from the same bytes, so
// the replicas stay equal, and the node keeps serving rather than refuse
// to start over one record. The image then lacks that entry's change.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return f.failed
	}
	recs, err := decodeFrame(l.Data)
	if err != nil {
		f.log.Error("skipping a metadata log entry that cannot be decoded", "index", l.Index, "err", err)
		return fmt.Errorf("metadata log entry %d: %w", l.Index, err)
	}
	next, err := applyRecords(f.cur.Load(), recs, l.Index)
	if err != nil {
		return err
	}
	if err := f.publish(next); err != nil {
		return err
	}
	return next
}

// publish makes next the current image and reports the change; f.mu must
// be held. An image of another cluster than the expected one is refused,
// and so is every later one: nothing of it reaches OnChange.
func (f *fsm) publish(next *Image) error {
	if f.clusterID != "" && next.ClusterID != "" && next.ClusterID != f.clusterID {
		f.failed = fmt.Errorf("%w: the metadata is of cluster %s, the data directory of cluster %s", ErrClusterMismatch, next.ClusterID, f.clusterID)
		f.log.Error("refusing the metadata of another cluster", "metadata_cluster_id", next.ClusterID, "cluster_id", f.clusterID)
		return f.failed
	}
	prev := f.cur.Swap(next)
	if f.onChange != nil {
		f.onChange(prev, next)
	}
	return nil
}

func (f *fsm) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Snapshot captures the current image; being immutable, it needs no copy.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return snapshot{img: f.cur.Load()}, nil
}

// Restore replaces the image with the one a snapshot holds.
//
// A snapshot that cannot be decoded stops the state machine, as an image
// of another cluster does: skipping it would lose the whole image, and
// failing the restore would make raft fall back to an older snapshot
// whose following entries may be compacted away, which raft does not
// survive. Restore then reports success to raft and Open fails, naming
// the snapshot's error.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read metadata snapshot: %w", err)
	}
	img, err := decodeSnapshot(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return nil
	}
	if err != nil {
		f.failed = err
		f.log.Error("metadata state machine stopped: the snapshot cannot be decoded", "err", err)
		return nil
	}
	// An image of another cluster sets f.failed as well.
	_ = f.publish(img)
	return nil
}

// snapshot is a raft.FSMSnapshot of one image.
type snapshot struct{ img *Image }

// Persist writes the snapshot: the image's index (int64), then one frame
// with the records that rebuild the image.
func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(encodeSnapshot(s.img)); err != nil {
		sink.Cancel()
		return fmt.Errorf("write metadata snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close metadata snapshot: %w", err)
	}
	return nil
}

// Release does nothing: the snapshot holds no resources.
func (snapshot) Release() {}

func encodeSnapshot(img *Image) []byte {
	b := kbin.AppendInt64(nil, int64(img.Index))
	return appendFrame(b, img.records())
}

func decodeSnapshot(data []byte) (*Image, error) {
	r := &kbin.Reader{Src: data}
	index := uint64(r.Int64())
	if err := r.Complete(); err != nil {
		return nil, fmt.Errorf("decode metadata snapshot header: %w", err)
	}
	recs, err := decodeFrame(r.Src)
	if err != nil {
		return nil, fmt.Errorf("decode metadata snapshot: %w", err)
	}
	img, err := applyRecords(emptyImage(), recs, index)
	if err != nil {
		return nil, fmt.Errorf("rebuild image from metadata snapshot: %w", err)
	}
	return img, nil
}

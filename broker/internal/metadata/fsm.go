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
	mu       sync.Mutex
	onChange func(prev, next *Image)
	notify   bool  // whether OnChange is called yet: only after Open's replay
	failed   error // set when a committed entry cannot be decoded
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(log *slog.Logger, onChange func(prev, next *Image)) *fsm {
	f := &fsm{log: log, onChange: onChange}
	f.cur.Store(emptyImage())
	return f
}

// Apply applies one committed raft entry. It returns the new *Image, or an
// error if the batch was rejected (the image is unchanged) or cannot be
// decoded. An entry this build cannot decode halts the state machine: every
// later entry is refused too, since applying them without it would build a
// wrong image.
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
		f.failed = fmt.Errorf("metadata log entry %d: %w", l.Index, err)
		f.log.Error("metadata state machine halted: cannot decode a committed entry", "index", l.Index, "err", err)
		return f.failed
	}
	next, err := applyRecords(f.cur.Load(), recs, l.Index)
	if err != nil {
		return err
	}
	f.publish(next)
	return next
}

// publish makes next the current image and reports the change; f.mu must
// be held.
func (f *fsm) publish(next *Image) {
	prev := f.cur.Swap(next)
	if f.notify && f.onChange != nil {
		f.onChange(prev, next)
	}
}

// startNotify reports the current image to OnChange with prev nil and from
// then on reports every change.
func (f *fsm) startNotify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notify = true
	if f.onChange != nil {
		f.onChange(nil, f.cur.Load())
	}
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
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read metadata snapshot: %w", err)
	}
	img, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = nil
	f.publish(img)
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

package streams

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/processor"
)

// StoreRestore names a store being restored and the partition it is
// restored from: its changelog, or the source topic of a table.
type StoreRestore struct {
	Task      processor.TaskID
	Store     string
	Topic     string
	Partition int32
}

// RestoreListener is told how the restores of stores progress (Kafka
// Streams' StateRestoreListener). Restores run on their own goroutines,
// several at once, so its methods are called concurrently and must be
// safe for that; they run on the restore's path and should return fast: a
// revocation waits for the restore it cancels, listener call included.
type RestoreListener interface {
	// OnRestoreStart is called before the first record is replayed, with
	// the first offset read and the offset the restore ends at.
	OnRestoreStart(r StoreRestore, start, end int64)
	// OnBatchRestored is called after each batch of records is written to
	// the store: batchEnd is the offset of the batch's last record, n the
	// number of records in it.
	OnBatchRestored(r StoreRestore, batchEnd int64, n int)
	// OnRestoreEnd is called once the store is restored up to its end,
	// with the number of records replayed in all.
	OnRestoreEnd(r StoreRestore, restored int64)
	// OnRestoreSuspended is called when a restore stops before its end
	// because the task moved away or the application is shutting down
	// (KIP-869).
	OnRestoreSuspended(r StoreRestore, restored int64)
}

// OnRestore sets the listener told of store restores. Default: none (Kafka
// Streams' KafkaStreams#setGlobalStateRestoreListener).
func OnRestore(l RestoreListener) Option { return func(c *config) { c.restoreListener = l } }

// restoration is a task being opened and restored off the thread's loop.
type restoration struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when tk or err is set
	tk     *task
	err    error
}

// startRestore opens a task in the background. Its input partitions are
// paused until the task is installed, so that the thread keeps processing
// its other tasks and a rebalance can revoke the task at any time.
func (th *thread) startRestore(ctx context.Context, id processor.TaskID) {
	rctx, cancel := context.WithCancel(ctx)
	r := &restoration{cancel: cancel, done: make(chan struct{})}
	th.restoring[id] = r
	th.app.local.setRestoring(id, true)
	th.cl.PauseFetchPartitions(th.inputsOf(id))
	go func() {
		defer close(r.done)
		r.tk, r.err = th.openTask(rctx, id)
	}()
}

// installRestored moves the tasks whose restore has finished into the
// running tasks and resumes their input partitions. A failed restore is the
// thread's error.
func (th *thread) installRestored() error {
	for id, r := range th.restoring {
		select {
		case <-r.done:
		default:
			continue
		}
		delete(th.restoring, id)
		r.cancel()
		th.app.local.setRestoring(id, false)
		if r.err != nil {
			return r.err
		}
		th.tasks[id] = r.tk
		th.app.local.add(r.tk)
		th.app.metrics.tasks.Add(1)
		th.cl.ResumeFetchPartitions(th.inputsOf(id))
		th.log.Info("task created", "task", id.String())
	}
	return nil
}

// stopRestore cancels the restore of a task that is revoked, lost or shut
// down, and waits for it to let go of the task's state directory. A
// restore that had finished meanwhile becomes a running task, for the
// caller to close.
func (th *thread) stopRestore(id processor.TaskID) {
	r, ok := th.restoring[id]
	if !ok {
		return
	}
	delete(th.restoring, id)
	r.cancel()
	<-r.done
	th.cl.ResumeFetchPartitions(th.inputsOf(id))
	th.app.local.setRestoring(id, false)
	if r.err == nil {
		th.tasks[id] = r.tk
		th.app.metrics.tasks.Add(1)
	}
}

// inputsOf returns the assigned input partitions of a task.
func (th *thread) inputsOf(id processor.TaskID) map[string][]int32 {
	out := make(map[string][]int32)
	for topic, sub := range th.plan.subOf {
		if sub == id.Subtopology {
			out[topic] = []int32{id.Partition}
		}
	}
	return out
}

// rewind sets a restoring task's partition back to the first record
// fetched for it before it was paused, so that the record is processed once
// the task runs.
func (th *thread) rewind(fp kgo.FetchTopicPartition) {
	first := fp.Records[0]
	th.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{
		fp.Topic: {fp.Partition: {Epoch: first.LeaderEpoch, Offset: first.Offset}},
	})
}

// restoreEvents reports a store's restore to the App's listener, if any.
type restoreEvents struct {
	l RestoreListener
	r StoreRestore
}

func (e restoreEvents) start(start, end int64) {
	if e.l != nil {
		e.l.OnRestoreStart(e.r, start, end)
	}
}

func (e restoreEvents) batch(end int64, n int) {
	if e.l != nil && n > 0 {
		e.l.OnBatchRestored(e.r, end, n)
	}
}

func (e restoreEvents) end(restored int64, err error) {
	switch {
	case e.l == nil:
	case err == nil:
		e.l.OnRestoreEnd(e.r, restored)
	case errors.Is(err, context.Canceled):
		e.l.OnRestoreSuspended(e.r, restored)
	}
}

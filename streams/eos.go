package streams

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/processor"
)

// eosTransactionTimeout is the transaction timeout of a thread's
// producer under ExactlyOnceV2, Kafka Streams' transaction.timeout.ms
// default under exactly-once: the longest a crashed instance's open
// transaction holds back read_committed consumers of its partitions.
const eosTransactionTimeout = 10 * time.Second

// errFenced marks a commit that failed because another producer fenced
// the thread's (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH): the thread's
// tasks are closed dirty and it rejoins the group with a new producer.
var errFenced = errors.New("producer fenced")

// errEndInterrupted marks a transaction whose End a rebalance interrupted
// (see onBlocked) after it had written its EndTxn request. The
// transaction is aborted, but whether its commit had reached the
// transaction coordinator first is unknown; the thread
// therefore rejoins as after a fencing, with a new client that reads the
// committed offsets from the group instead of trusting its own.
var errEndInterrupted = errors.New("transaction end interrupted by a rebalance")

// defaultCommitInterval is Kafka Streams' commit.interval.ms default for
// a processing guarantee.
func defaultCommitInterval(g Guarantee) time.Duration {
	if g == ExactlyOnceV2 {
		return 100 * time.Millisecond
	}
	return 30 * time.Second
}

// newProcessID returns a random UUID (version 4) naming this instance.
func newProcessID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// transactionalID is the thread's transactional id under ExactlyOnceV2,
// built as Kafka Streams builds it: application id, process id, thread.
// Zombies are fenced by the group generation (KIP-447), not by the id.
func (th *thread) transactionalID() string {
	return fmt.Sprintf("%s-%s-%d", th.app.cfg.appID, th.app.processID, th.id)
}

// connect creates the thread's client from th.opts: under ExactlyOnceV2 a
// group transact session whose producer is transactional and whose
// consumer reads committed records only.
func (th *thread) connect() error {
	th.inTxn, th.abortNow = false, false
	if th.app.cfg.guarantee != ExactlyOnceV2 {
		cl, err := kgo.NewClient(th.opts...)
		if err != nil {
			return fmt.Errorf("thread %d: client: %w", th.id, err)
		}
		th.cl = cl
		return nil
	}
	sess, err := kgo.NewGroupTransactSession(append([]kgo.Opt{
		kgo.TransactionalID(th.transactionalID()),
		kgo.TransactionTimeout(eosTransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	}, append(th.opts, kgo.OnPartitionsCallbackBlocked(th.onBlocked), kgo.WithHooks(&th.endTxns))...)...)
	if err != nil {
		return fmt.Errorf("thread %d: transactional client: %w", th.id, err)
	}
	th.sess, th.cl = sess, sess.Client()
	return nil
}

// begin opens a transaction unless one is open. Call it before anything
// is produced.
func (th *thread) begin() error {
	if th.sess == nil || th.inTxn {
		return nil
	}
	if err := th.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	th.inTxn = true
	th.wrote.Store(false)
	return nil
}

// commitTxn ends the open transaction, committing the consumed offsets
// with everything produced since it began. When the transaction aborts
// instead (a rebalance since it began, a failed produce, a fenced or
// expired producer) every task is closed dirty: its local state holds
// effects of the aborted records, so the next assignment restores it from
// the changelogs' committed records, and the consumer is back at the
// committed offsets.
func (th *thread) commitTxn(ctx context.Context, began time.Time) error {
	if !th.inTxn {
		return nil
	}
	dirty := th.wrote.Load() || th.abortNow
	for _, tk := range th.tasks {
		dirty = dirty || tk.dirty
	}
	if !dirty {
		return nil // nothing produced or consumed: keep the transaction
	}
	th.inTxn = false
	if err := th.produceErr(); err != nil {
		_, abortErr := th.sess.End(ctx, kgo.TryAbort)
		th.closeAllDirty()
		return th.fenced(errors.Join(err, abortErr))
	}
	committed, err := th.end(ctx)
	if err != nil {
		th.closeAllDirty()
		return th.fenced(fmt.Errorf("end transaction: %w", err))
	}
	if !committed {
		th.log.Info("transaction aborted; tasks restore from their changelogs")
		th.closeAllDirty()
		th.abortNow = false
		return nil
	}
	th.app.metrics.commits.Add(1)
	th.app.metrics.commit.Observe(time.Since(began).Seconds())
	for _, tk := range th.tasks {
		tk.dirty = false
	}
	return nil
}

// endGrace is how long an End under way may still run once a rebalance
// waits for the thread, before onBlocked cancels it: long enough for one
// that has its heartbeat and only waits for its EndTxn, the common case
// when the heartbeat that allowed the commit also brought the new
// assignment.
const endGrace = time.Second

// onBlocked is the thread's OnPartitionsCallbackBlocked: a rebalance
// waits for the thread to allow it. Under KIP-848 the group member stops
// heartbeating once it has seen its new assignment, and
// GroupTransactSession.End waits for a heartbeat before it commits, so an
// End under way or still to come before the thread allows the rebalance
// may wait forever. The thread aborts the transaction instead, as the
// session would once the rebalance revoked anything: an End under way is
// cancelled if it has not returned within endGrace, and the thread's next
// End aborts.
func (th *thread) onBlocked(context.Context, *kgo.Client) {
	th.endMu.Lock()
	defer th.endMu.Unlock()
	th.rebalancing = true
	if th.endCancel != nil {
		time.AfterFunc(endGrace, th.endCancel)
	}
}

// allowRebalance lets a waiting rebalance go on (BlockRebalanceOnPoll):
// what waited is no longer waiting.
func (th *thread) allowRebalance() {
	th.endMu.Lock()
	th.rebalancing = false
	th.endMu.Unlock()
	th.cl.AllowRebalance()
}

// end commits the open transaction with the session's End, which
// onBlocked may cancel, or aborts it if a rebalance already waits. An
// interrupted End is followed by an abort; it is reported as
// errEndInterrupted if it had written its EndTxn request, so that the
// commit may have happened, and as not committed otherwise.
func (th *thread) end(ctx context.Context) (bool, error) {
	endCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	th.endMu.Lock()
	waiting := th.rebalancing
	if !waiting {
		th.endCancel = cancel
	}
	th.endMu.Unlock()
	if waiting {
		return false, th.abort(ctx)
	}
	written := th.endTxns.n.Load()
	committed, err := th.sess.End(endCtx, kgo.TryCommit)
	th.endMu.Lock()
	th.endCancel = nil
	th.endMu.Unlock()
	if err == nil || endCtx.Err() == nil || ctx.Err() != nil {
		return committed, err
	}
	maybeCommitted := th.endTxns.n.Load() != written
	abortErr := th.abort(ctx)
	if maybeCommitted {
		return false, errors.Join(fmt.Errorf("%w: %w", errEndInterrupted, err), abortErr)
	}
	return false, abortErr
}

// abort aborts the open transaction and forgets the produces the abort
// failed (what was still buffered).
func (th *thread) abort(ctx context.Context) error {
	if _, err := th.sess.End(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("abort transaction: %w", err)
	}
	th.clearProduceErr()
	return nil
}

// endTxnWrites counts the EndTxn requests a client wrote, as a
// kgo.HookBrokerWrite.
type endTxnWrites struct{ n atomic.Int64 }

// OnBrokerWrite counts a written EndTxn request, or part of one.
func (w *endTxnWrites) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, written int, _, _ time.Duration, _ error) {
	if key == kmsg.EndTxn.Int16() && written > 0 {
		w.n.Add(1)
	}
}

// missingTasks reports whether an assigned partition has neither a task
// nor a restore under way: one ensureTasks is about to start restoring.
func (th *thread) missingTasks() bool {
	for topic, parts := range th.assigned {
		for p := range parts {
			id := processor.TaskID{Subtopology: th.plan.subOf[topic], Partition: p}
			_, open := th.tasks[id]
			_, restoring := th.restoring[id]
			if !open && !restoring {
				return true
			}
		}
	}
	return false
}

// fenced marks err with errFenced when the producer was fenced.
func (th *thread) fenced(err error) error {
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) {
		return fmt.Errorf("%w: %w", errFenced, err)
	}
	return err
}

// rejoin replaces a fenced thread's client: its tasks are closed dirty,
// the old client leaves the group, and a new producer and group member
// take the thread's place.
func (th *thread) rejoin() error {
	th.mu.Lock()
	for id := range th.restoring {
		th.stopRestore(id) // installs a finished restore's task, closed next
	}
	th.closeAllDirty()
	th.out.drain(th.cl)
	th.clearProduceErr()
	old := th.cl
	th.mu.Unlock()
	old.CloseAllowingRebalance()
	th.mu.Lock()
	defer th.mu.Unlock()
	clear(th.assigned)
	return th.connect()
}

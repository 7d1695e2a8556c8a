// Package txn is the broker's transaction coordinator: it keeps, for each
// transactional id, the producer id and epoch, the transaction's state
// (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
// CompleteAbort), its partitions and consumer groups, its timeout and
// when it began, and drives the end of each transaction as Kafka's
// coordinator does, in both flows of Kafka 4: transaction version 1, where
// partitions and groups are added explicitly and the epoch is bumped at
// InitProducerId, and transaction version 2 (KIP-890 part 2), where a
// produce or a transactional offset commit adds its partition or group
// implicitly and every EndTxn bumps the epoch, so that no late request of
// an ended transaction can join the next one.
//
// Every change is synced to a Pebble store in Config.Dir before the
// request that made it is answered, but for the last step of ending a
// transaction (see completeLocked). Ending a transaction first makes its
// Prepare state durable, so the outcome is decided; then the coordinator
// writes the commit or abort markers to every partition of the
// transaction (Config.Markers, durably), makes the group offsets of the
// transaction visible or drops them (Config.Groups), and makes the
// Complete state durable. Open completes the transactions a crash left
// prepared; a completion that fails is retried in the background.
//
// A transaction open longer than its timeout is aborted by the
// coordinator with the producer's epoch bumped, which fences the
// producer: its next request is refused with PRODUCER_FENCED (or
// INVALID_PRODUCER_EPOCH on a produce). InitProducerId from a new
// instance of a producer aborts the transaction its predecessor left open
// the same way.
//
// Each transactional id has its own lock, held while a request changes
// it, while a transaction is completed, and while a produce or a
// transactional offset commit it verified is applied (Verify): a batch
// verified as part of a transaction lands before the transaction's
// markers, never after.
package txn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
)

// State is the state of a transactional id, with Kafka's names and codes
// (kmsg.TransactionState).
type State int8

// The states a transactional id goes through.
const (
	// Empty: the producer is initialized and has no transaction.
	Empty State = iota
	// Ongoing: the transaction has partitions or groups.
	Ongoing
	// PrepareCommit: the commit is decided; markers are being written.
	PrepareCommit
	// PrepareAbort: the abort is decided; markers are being written.
	PrepareAbort
	// CompleteCommit: the last transaction committed.
	CompleteCommit
	// CompleteAbort: the last transaction aborted.
	CompleteAbort
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"}

// String returns Kafka's name of the state.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", s)
	}
	return stateNames[s]
}

// ParseState returns the state of a Kafka state name.
func ParseState(name string) (State, bool) {
	i := slices.Index(stateNames[:], name)
	return State(i), i >= 0
}

// Partition names one topic partition.
type Partition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

func (p Partition) compare(q Partition) int {
	return cmp.Or(cmp.Compare(p.Topic, q.Topic), cmp.Compare(p.Partition, q.Partition))
}

// Defaults of Config.
const (
	// DefaultMaxTimeout is Kafka's transaction.max.timeout.ms: 15 minutes.
	DefaultMaxTimeout = 15 * time.Minute
	// DefaultAbortInterval is Kafka's
	// transaction.abort.timed.out.transaction.cleanup.interval.ms: 10 s.
	DefaultAbortInterval = 10 * time.Second
)

// Config configures a Coordinator.
type Config struct {
	// Dir is the Pebble directory of the transaction state. It is
	// created if missing.
	Dir string
	// FS is the file system of the store; nil means the operating
	// system's. Tests pass vfs.NewStrictMem to simulate power loss.
	FS vfs.FS
	// MaxTimeout is the longest transaction timeout a producer may ask
	// for (transaction.max.timeout.ms); 0 means DefaultMaxTimeout.
	MaxTimeout time.Duration
	// AbortInterval is how often transactions are checked for their
	// timeout (transaction.abort.timed.out.transaction.cleanup.interval.ms);
	// 0 means DefaultAbortInterval.
	AbortInterval time.Duration
	// ProducerIDs hands out a producer id never used before. Required.
	ProducerIDs func() (int64, error)
	// PartitionCount returns the number of partitions of a topic, 0 if
	// it does not exist. Required.
	PartitionCount func(topic string) int32
	// Markers writes the commit or abort markers of producer pid at
	// epoch to the partitions, durably, skipping the partitions that no
	// longer exist. Required.
	Markers func(ctx context.Context, pid int64, epoch int16, commit bool, parts []Partition) error
	// Groups makes the offsets producer pid committed in its transaction
	// to the groups visible (commit) or drops them, durably. Required.
	Groups func(pid int64, groups []string, commit bool) error
	// Logger receives the coordinator's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Coordinator is the transaction coordinator. Its methods are safe for
// concurrent use.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	store *store
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu   sync.Mutex
	txns map[string]*entry
}

// entry is one transactional id. rec is guarded by mu; a new entry has
// producer id -1 until its first InitProducerId is stored.
type entry struct {
	mu  sync.Mutex
	id  string
	rec record
}

// Open opens the store in cfg.Dir, completes the transactions left
// prepared and starts aborting expired ones.
func Open(cfg Config) (*Coordinator, error) {
	if cfg.ProducerIDs == nil || cfg.PartitionCount == nil || cfg.Markers == nil || cfg.Groups == nil {
		return nil, errors.New("txn: Config.ProducerIDs, PartitionCount, Markers and Groups are required")
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.AbortInterval <= 0 {
		cfg.AbortInterval = DefaultAbortInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := openStore(cfg.Dir, cfg.FS, cfg.Logger)
	if err != nil {
		return nil, err
	}
	recs, err := st.load()
	if err != nil {
		return nil, errors.Join(err, st.close())
	}
	c := &Coordinator{cfg: cfg, log: cfg.Logger, store: st, txns: make(map[string]*entry, len(recs))}
	c.ctx, c.stop = context.WithCancel(context.Background())
	prepared := 0
	for id, r := range recs {
		e := &entry{id: id, rec: r}
		c.txns[id] = e
		if r.State == PrepareCommit || r.State == PrepareAbort {
			prepared++
			e.mu.Lock()
			if err := c.completeLocked(e); err != nil {
				c.log.Warn("completing a prepared transaction; retrying in the background", "transactional_id", id, "err", err)
			}
			e.mu.Unlock()
		}
	}
	c.log.Info("transaction coordinator open", "dir", cfg.Dir, "transactional_ids", len(recs), "completed_prepared", prepared)
	c.wg.Add(1)
	go c.abortLoop()
	return c, nil
}

// Close stops the coordinator and closes its store.
func (c *Coordinator) Close() error {
	c.stop()
	c.wg.Wait()
	return c.store.close()
}

// lookup returns the entry of id, nil if it has none.
func (c *Coordinator) lookup(id string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.txns[id]
}

// entries returns every entry.
func (c *Coordinator) entries() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*entry, 0, len(c.txns))
	for _, e := range c.txns {
		out = append(out, e)
	}
	return out
}

// putLocked stores e's record as changed, synced, undoing the change if
// the write fails, and returns the error to answer with.
func (c *Coordinator) putLocked(e *entry, prev record) *kerr.Error {
	return c.writeLocked(e, prev, true)
}

// writeLocked is putLocked, syncing only if sync.
func (c *Coordinator) writeLocked(e *entry, prev record, sync bool) *kerr.Error {
	e.rec.Updated = time.Now().UnixMilli()
	if err := c.store.put(e.id, &e.rec, sync); err != nil {
		c.log.Error("store transaction state", "transactional_id", e.id, "err", err)
		e.rec = prev
		return kerr.CoordinatorNotAvailable
	}
	return nil
}

// InitProducerID gives the producer of transactional id its producer id
// and a new epoch, fencing every older instance: a transaction left open
// is aborted first. pid and epoch are the caller's current ones (KIP-360),
// -1 for a new producer; timeout is its transaction.timeout.ms.
func (c *Coordinator) InitProducerID(id string, timeout time.Duration, pid int64, epoch int16) (int64, int16, *kerr.Error) {
	if timeout <= 0 || timeout > c.cfg.MaxTimeout {
		return -1, -1, kerr.InvalidTransactionTimeout
	}
	c.mu.Lock()
	e := c.txns[id]
	if e == nil {
		e = &entry{id: id, rec: record{ProducerID: -1, PrevProducerID: -1, Started: -1}}
		c.txns[id] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.finishLocked(e); err != nil {
		return -1, -1, err
	}
	r := &e.rec
	if pid >= 0 && r.ProducerID >= 0 && (pid != r.ProducerID || epoch != r.Epoch) {
		return -1, -1, kerr.ProducerFenced
	}
	if r.State == Ongoing {
		if err := c.abortLocked(e); err != nil {
			return -1, -1, err
		}
	}
	prev := *r
	if r.ProducerID < 0 || r.Epoch >= math.MaxInt16-1 {
		// A new producer, or one whose epochs are exhausted: a new id.
		next, err := c.cfg.ProducerIDs()
		if err != nil {
			c.log.Error("allocate producer id", "transactional_id", id, "err", err)
			return -1, -1, kerr.CoordinatorNotAvailable
		}
		r.ProducerID, r.Epoch = next, 0
	} else {
		r.Epoch++
	}
	r.TimeoutMs, r.State, r.Partitions, r.Groups, r.Started, r.PrevProducerID = int32(timeout.Milliseconds()), Empty, nil, nil, -1, -1
	if err := c.putLocked(e, prev); err != nil {
		return -1, -1, err
	}
	return r.ProducerID, r.Epoch, nil
}

// finishLocked completes the transaction of e if it is prepared, for a
// request that must see it ended; CONCURRENT_TRANSACTIONS if that fails
// again, which clients retry.
func (c *Coordinator) finishLocked(e *entry) *kerr.Error {
	if s := e.rec.State; s != PrepareCommit && s != PrepareAbort {
		return nil
	}
	if err := c.completeLocked(e); err != nil {
		c.log.Warn("completing a prepared transaction", "transactional_id", e.id, "err", err)
		return kerr.ConcurrentTransactions
	}
	return nil
}

// abortLocked aborts e's ongoing transaction with the epoch bumped, so
// that the producer that opened it is fenced.
func (c *Coordinator) abortLocked(e *entry) *kerr.Error {
	prev := e.rec
	if e.rec.Epoch < math.MaxInt16 {
		e.rec.Epoch++
	}
	e.rec.State = PrepareAbort
	if err := c.putLocked(e, prev); err != nil {
		return err
	}
	if err := c.completeLocked(e); err != nil {
		c.log.Warn("aborting a transaction; retrying in the background", "transactional_id", e.id, "err", err)
		return kerr.ConcurrentTransactions
	}
	return nil
}

// completeLocked writes the markers of e's prepared transaction, ends its
// group offsets, and stores the Complete state.
func (c *Coordinator) completeLocked(e *entry) error {
	r := &e.rec
	commit := r.State == PrepareCommit
	if err := c.cfg.Markers(c.ctx, r.ProducerID, r.Epoch, commit, r.Partitions); err != nil {
		return fmt.Errorf("write markers: %w", err)
	}
	if len(r.Groups) > 0 {
		if err := c.cfg.Groups(r.ProducerID, r.Groups, commit); err != nil {
			return fmt.Errorf("end the transaction's group offsets: %w", err)
		}
	}
	prev := *r
	r.State = CompleteAbort
	if commit {
		r.State = CompleteCommit
	}
	r.Partitions, r.Groups, r.Started = nil, nil, -1
	// The Complete state is not synced: if a power cut takes it back, the
	// next start completes the prepared transaction again, which writes
	// markers for a producer with nothing open. It cannot close a later
	// transaction of the producer: any change stored for one is synced,
	// and the write-ahead log makes this write durable with it.
	if err := c.writeLocked(e, prev, false); err != nil {
		return errors.New("store the completed state")
	}
	return nil
}

// checkProducerLocked checks that a request of the transaction's producer
// comes from its current instance.
func checkProducerLocked(e *entry, pid int64, epoch int16) *kerr.Error {
	switch {
	case e.rec.ProducerID < 0 || pid != e.rec.ProducerID:
		return kerr.InvalidProducerIDMapping
	case epoch != e.rec.Epoch:
		return kerr.ProducerFenced
	}
	return nil
}

// begin starts a transaction in e if none is ongoing.
func (r *record) begin(now time.Time) {
	if r.State != Ongoing {
		r.State, r.Partitions, r.Groups, r.Started = Ongoing, nil, nil, now.UnixMilli()
	}
}

// AddPartitions adds partitions to the transaction of id, starting one if
// none is ongoing. It returns an error for the whole request, or one per
// partition: UNKNOWN_TOPIC_OR_PARTITION for those that do not exist and
// OPERATION_NOT_ATTEMPTED for the others, as Kafka answers.
func (c *Coordinator) AddPartitions(id string, pid int64, epoch int16, parts []Partition) (*kerr.Error, map[Partition]*kerr.Error) {
	e := c.lookup(id)
	if e == nil {
		return kerr.InvalidProducerIDMapping, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := checkProducerLocked(e, pid, epoch); err != nil {
		return err, nil
	}
	if err := c.finishLocked(e); err != nil {
		return err, nil
	}
	var unknown map[Partition]*kerr.Error
	for _, p := range parts {
		if p.Partition < 0 || p.Partition >= c.cfg.PartitionCount(p.Topic) {
			if unknown == nil {
				unknown = make(map[Partition]*kerr.Error)
			}
			unknown[p] = kerr.UnknownTopicOrPartition
		}
	}
	if unknown != nil {
		for _, p := range parts {
			if unknown[p] == nil {
				unknown[p] = kerr.OperationNotAttempted
			}
		}
		return nil, unknown
	}
	prev := e.rec
	prev.Partitions = slices.Clone(prev.Partitions)
	r := &e.rec
	r.begin(time.Now())
	changed := prev.State != Ongoing
	for _, p := range parts {
		i, found := slices.BinarySearchFunc(r.Partitions, p, Partition.compare)
		if !found {
			r.Partitions = slices.Insert(r.Partitions, i, p)
			changed = true
		}
	}
	if !changed {
		return nil, nil
	}
	return c.putLocked(e, prev), nil
}

// AddGroup adds a consumer group to the transaction of id
// (AddOffsetsToTxn), starting one if none is ongoing.
func (c *Coordinator) AddGroup(id string, pid int64, epoch int16, group string) *kerr.Error {
	e := c.lookup(id)
	if e == nil {
		return kerr.InvalidProducerIDMapping
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := checkProducerLocked(e, pid, epoch); err != nil {
		return err
	}
	if err := c.finishLocked(e); err != nil {
		return err
	}
	return c.addLocked(e, nil, group)
}

// EndTxn commits or aborts the ongoing transaction of id. It answers once
// the outcome is durable and, unless writing them failed (they are then
// retried in the background), the markers are written. A retry of an
// end already completed succeeds.
//
// With bump (EndTxn v5, transaction version 2) the epoch is bumped for
// the markers and returned for the producer's next transaction, with a
// new producer id once the epochs run out; a retry from the previous
// epoch (or id) gets the current ones, and an abort with no transaction
// ongoing only bumps the epoch. Without bump the producer keeps its id
// and epoch, which are returned unchanged.
func (c *Coordinator) EndTxn(id string, pid int64, epoch int16, commit, bump bool) (int64, int16, *kerr.Error) {
	e := c.lookup(id)
	if e == nil {
		return -1, -1, kerr.InvalidProducerIDMapping
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := &e.rec
	ended := commit && (r.State == PrepareCommit || r.State == CompleteCommit) || !commit && (r.State == PrepareAbort || r.State == CompleteAbort)
	if bump && ended && r.ProducerID >= 0 && (pid == r.ProducerID && epoch == r.Epoch-1 || r.PrevProducerID >= 0 && pid == r.PrevProducerID) {
		// The retry of an end whose answer was lost.
		if err := c.finishLocked(e); err != nil {
			return -1, -1, err
		}
		return r.ProducerID, r.Epoch, nil
	}
	if err := checkProducerLocked(e, pid, epoch); err != nil {
		return -1, -1, err
	}
	switch r.State {
	case Ongoing:
	case PrepareCommit, PrepareAbort:
		if (r.State == PrepareCommit) != commit {
			return -1, -1, kerr.InvalidTxnState
		}
		if err := c.finishLocked(e); err != nil {
			return -1, -1, err
		}
		return r.ProducerID, r.Epoch, nil
	case Empty, CompleteCommit, CompleteAbort:
		if bump && !commit {
			// Transaction version 2: an abort of nothing bumps the epoch.
			prev := *r
			if err := c.bumpLocked(e); err != nil {
				return -1, -1, err
			}
			r.State = CompleteAbort
			if err := c.putLocked(e, prev); err != nil {
				return -1, -1, err
			}
			return r.ProducerID, r.Epoch, nil
		}
		if r.State != Empty && (r.State == CompleteCommit) == commit && !bump {
			return r.ProducerID, r.Epoch, nil
		}
		return -1, -1, kerr.InvalidTxnState
	}
	prev := *r
	if bump {
		if r.Epoch < math.MaxInt16 {
			r.Epoch++
		}
	}
	r.State = PrepareAbort
	if commit {
		r.State = PrepareCommit
	}
	if err := c.putLocked(e, prev); err != nil {
		return -1, -1, err
	}
	if err := c.completeLocked(e); err != nil {
		c.log.Warn("ending a transaction; retrying in the background", "transactional_id", id, "err", err)
	}
	if bump && r.Epoch >= math.MaxInt16-1 {
		// The next transaction needs a new producer id.
		prev := *r
		if err := c.bumpLocked(e); err != nil {
			return -1, -1, err
		}
		if err := c.putLocked(e, prev); err != nil {
			return -1, -1, err
		}
	}
	return r.ProducerID, r.Epoch, nil
}

// bumpLocked moves e to the next epoch, or to a new producer id at epoch 0
// once the epochs run out, remembering the id it replaces. The caller
// stores the change.
func (c *Coordinator) bumpLocked(e *entry) *kerr.Error {
	r := &e.rec
	if r.Epoch < math.MaxInt16-1 {
		r.Epoch++
		return nil
	}
	next, err := c.cfg.ProducerIDs()
	if err != nil {
		c.log.Error("allocate producer id", "transactional_id", e.id, "err", err)
		return kerr.CoordinatorNotAvailable
	}
	r.PrevProducerID, r.ProducerID, r.Epoch = r.ProducerID, next, 0
	return nil
}

// Verify checks that producer pid at epoch runs the ongoing transaction of
// id and that the transaction holds part (KIP-890's verification of a
// produce), or group if part is nil (a transactional offset commit), and
// then calls apply while no end of the transaction can start. It returns
// INVALID_PRODUCER_ID_MAPPING for another producer, INVALID_PRODUCER_EPOCH
// for another epoch, and INVALID_TXN_STATE for a partition or group
// outside an ongoing transaction.
//
// With add (transaction version 2: a Produce v12+ or a TxnOffsetCommit
// v5+) the partition or group is added to the transaction instead, which
// starts one if none is ongoing.
func (c *Coordinator) Verify(id string, pid int64, epoch int16, part *Partition, group string, add bool, apply func()) *kerr.Error {
	e := c.lookup(id)
	if e == nil {
		return kerr.InvalidProducerIDMapping
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := &e.rec
	switch {
	case r.ProducerID < 0 || pid != r.ProducerID:
		return kerr.InvalidProducerIDMapping
	case epoch != r.Epoch:
		return kerr.InvalidProducerEpoch
	}
	if add {
		if err := c.finishLocked(e); err != nil {
			return err
		}
		if err := c.addLocked(e, part, group); err != nil {
			return err
		}
	}
	if r.State != Ongoing {
		return kerr.InvalidTxnState
	}
	if part != nil {
		if _, ok := slices.BinarySearchFunc(r.Partitions, *part, Partition.compare); !ok {
			return kerr.InvalidTxnState
		}
	} else if _, ok := slices.BinarySearch(r.Groups, group); !ok {
		return kerr.InvalidTxnState
	}
	if apply != nil {
		apply()
	}
	return nil
}

// addLocked adds part, or group if part is nil, to e's transaction,
// starting one if none is ongoing, and stores the change.
func (c *Coordinator) addLocked(e *entry, part *Partition, group string) *kerr.Error {
	prev := e.rec
	prev.Partitions, prev.Groups = slices.Clone(prev.Partitions), slices.Clone(prev.Groups)
	r := &e.rec
	r.begin(time.Now())
	changed := prev.State != Ongoing
	if part != nil {
		if i, found := slices.BinarySearchFunc(r.Partitions, *part, Partition.compare); !found {
			r.Partitions, changed = slices.Insert(r.Partitions, i, *part), true
		}
	} else if i, found := slices.BinarySearch(r.Groups, group); !found {
		r.Groups, changed = slices.Insert(r.Groups, i, group), true
	}
	if !changed {
		return nil
	}
	return c.putLocked(e, prev)
}

// Info describes one transactional id.
type Info struct {
	TransactionalID string
	ProducerID      int64
	Epoch           int16
	State           State
	Timeout         time.Duration
	// Started is when the ongoing transaction began, zero if none is.
	Started    time.Time
	Partitions []Partition
	Groups     []string
}

func (e *entry) infoLocked() Info {
	r := &e.rec
	in := Info{TransactionalID: e.id, ProducerID: r.ProducerID, Epoch: r.Epoch, State: r.State, Timeout: time.Duration(r.TimeoutMs) * time.Millisecond,
		Partitions: slices.Clone(r.Partitions), Groups: slices.Clone(r.Groups)}
	if r.Started >= 0 {
		in.Started = time.UnixMilli(r.Started)
	}
	return in
}

// Describe returns the state of transactional id; ok is false for an id
// the coordinator does not know.
func (c *Coordinator) Describe(id string) (Info, bool) {
	e := c.lookup(id)
	if e == nil {
		return Info{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rec.ProducerID < 0 {
		return Info{}, false
	}
	return e.infoLocked(), true
}

// List returns the state of every transactional id, by id. It does not
// wait for transactions being completed: they show as prepared.
func (c *Coordinator) List() []Info {
	var out []Info
	for _, e := range c.entries() {
		if !e.mu.TryLock() {
			// A completion holds the lock; read what is stored.
			if in, ok := c.describeStored(e.id); ok {
				out = append(out, in)
			}
			continue
		}
		if e.rec.ProducerID >= 0 {
			out = append(out, e.infoLocked())
		}
		e.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Info) int { return cmp.Compare(a.TransactionalID, b.TransactionalID) })
	return out
}

// describeStored reads the stored record of id.
func (c *Coordinator) describeStored(id string) (Info, bool) {
	v, closer, err := c.store.db.Get(txnKey(id))
	if err != nil {
		return Info{}, false
	}
	defer closer.Close()
	r, err := decodeRecord(v)
	if err != nil {
		return Info{}, false
	}
	return (&entry{id: id, rec: r}).infoLocked(), true
}

// abortLoop aborts the transactions that outlived their timeout and
// retries the completions that failed.
func (c *Coordinator) abortLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.AbortInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.abortExpired(now)
		}
	}
}

// abortExpired aborts, with the producer fenced, every ongoing
// transaction started more than its timeout before now, and completes
// the prepared ones.
func (c *Coordinator) abortExpired(now time.Time) {
	for _, e := range c.entries() {
		if c.ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		r := &e.rec
		switch {
		case r.State == PrepareCommit || r.State == PrepareAbort:
			if err := c.completeLocked(e); err != nil {
				c.log.Warn("completing a prepared transaction", "transactional_id", e.id, "err", err)
			}
		case r.State == Ongoing && now.UnixMilli()-r.Started > int64(r.TimeoutMs):
			c.log.Info("aborting a transaction past its timeout", "transactional_id", e.id, "producer_id", r.ProducerID, "timeout_ms", r.TimeoutMs)
			c.abortLocked(e)
		}
		e.mu.Unlock()
	}
}

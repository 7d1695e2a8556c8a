package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kgo"
)

func txnBatch(pid int64, epoch int16, seq int32, n int) spec {
	s := idem(pid, epoch, seq, n)
	s.txn = true
	return s
}

func mustAppendTxn(t testing.TB, l *Log, b []byte) AppendResult {
	t.Helper()
	res, err := l.AppendTransactional(b, t0)
	if err == nil {
		err = l.WaitDurable(context.Background(), res.LastOffset+1)
	}
	if err != nil {
		t.Fatalf("transactional append: %v", err)
	}
	return res
}

func mustMarker(t testing.TB, l *Log, pid int64, epoch int16, commit bool) int64 {
	t.Helper()
	off, err := l.AppendMarker(pid, epoch, commit, 0, t0)
	if err == nil {
		err = l.WaitDurable(context.Background(), off+1)
	}
	if err != nil {
		t.Fatalf("marker: %v", err)
	}
	return off
}

// committedOffsets returns the base offsets of the data batches
// FetchCommitted returns from offset on, reading to the LSO, with the
// aborted transactions it lists, each once.
func committedOffsets(t testing.TB, l *Log, from int64) ([]int64, []AbortedTxn) {
	t.Helper()
	var offs []int64
	var aborted []AbortedTxn
	for off := from; off < l.LastStableOffset(); {
		b, _, ab, err := l.FetchCommitted(off, 1<<20, nil)
		if err != nil {
			t.Fatalf("fetch committed at %d: %v", off, err)
		}
		if len(b) == 0 {
			t.Fatalf("fetch committed at %d below the LSO %d returned nothing", off, l.LastStableOffset())
		}
		for _, a := range ab {
			if !slices.Contains(aborted, a) {
				aborted = append(aborted, a)
			}
		}
		for len(b) > 0 {
			h := parseHeader(b)
			if h.attributes&attrControl == 0 {
				offs = append(offs, h.baseOffset)
			}
			off = h.lastOffset() + 1
			b = b[h.size:]
		}
	}
	return offs, aborted
}

func TestTransactionLastStableOffset(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	mustAppend(t, l, makeBatch(t, plain(2, 1000)))          // 0-1
	mustAppendTxn(t, l, makeBatch(t, txnBatch(7, 0, 0, 3))) // 2-4
	mustAppend(t, l, makeBatch(t, plain(1, 1000)))          // 5
	mustAppendTxn(t, l, makeBatch(t, txnBatch(8, 0, 0, 1))) // 6
	if got := l.LastStableOffset(); got != 2 {
		t.Fatalf("LSO with open transactions from 2 and 6 is %d", got)
	}
	if hwm := l.HighWatermark(); hwm != 7 {
		t.Fatalf("high watermark %d, want 7", hwm)
	}
	b, bounds, aborted, err := l.FetchCommitted(0, 1<<20, nil)
	if err != nil || lastBatchEnd(b) != 2 || len(aborted) != 0 || bounds.LastStableOffset != 2 {
		t.Fatalf("fetch committed at 0: end %d, aborted %v, bounds %+v, err %v; want the batch below the LSO 2 only", lastBatchEnd(b), aborted, bounds, err)
	}
	if b, _, _, err := l.FetchCommitted(2, 1<<20, nil); err != nil || len(b) != 0 {
		t.Fatalf("fetch committed at the LSO returned %d bytes, err %v", len(b), err)
	}
	if b, _ := l.Read(2, 1<<20, nil); lastBatchEnd(b) != 7 {
		t.Fatalf("read_uncommitted fetch ends at %d, want 7", lastBatchEnd(b))
	}

	abortAt := mustMarker(t, l, 7, 0, false) // 7
	if got := l.LastStableOffset(); got != 6 {
		t.Fatalf("LSO after aborting the first transaction is %d, want 6", got)
	}
	mustMarker(t, l, 8, 0, true) // 8
	if got, hwm := l.LastStableOffset(), l.HighWatermark(); got != hwm || hwm != 9 {
		t.Fatalf("LSO %d with no open transaction, high watermark %d, want both 9", got, hwm)
	}
	offs, aborted := committedOffsets(t, l, 0)
	if want := []int64{0, 2, 5, 6}; !slices.Equal(offs, want) {
		t.Errorf("read_committed data batches at %v, want %v (aborted ones are dropped by the client)", offs, want)
	}
	want := []AbortedTxn{{ProducerID: 7, FirstOffset: 2, LastOffset: abortAt, LastStableOffset: 6}}
	if !slices.Equal(aborted, want) {
		t.Errorf("aborted transactions %v, want %v", aborted, want)
	}
	// A fetch from after the abort marker lists no aborted transaction.
	if _, _, ab, err := l.FetchCommitted(8, 1<<20, nil); err != nil || len(ab) != 0 {
		t.Errorf("fetch after the abort marker lists %v, err %v", ab, err)
	}
}

func TestTransactionStateRefusals(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	if _, err := l.Append(makeBatch(t, txnBatch(7, 0, 0, 1)), t0); !errors.Is(err, ErrInvalidTxnState) {
		t.Errorf("unverified transactional batch: %v, want ErrInvalidTxnState", err)
	}
	mustAppendTxn(t, l, makeBatch(t, txnBatch(7, 0, 0, 1)))
	if _, err := l.Append(makeBatch(t, idem(7, 0, 1, 1)), t0); !errors.Is(err, ErrInvalidTxnState) {
		t.Errorf("non-transactional batch inside the producer's transaction: %v, want ErrInvalidTxnState", err)
	}
	// The coordinator fences the producer: it aborts with a bumped epoch.
	mustMarker(t, l, 7, 1, false)
	if _, err := l.AppendTransactional(makeBatch(t, txnBatch(7, 0, 1, 1)), t0); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Errorf("zombie batch at the old epoch: %v, want ErrInvalidProducerEpoch", err)
	}
	if _, err := l.AppendMarker(7, 0, true, 0, t0); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Errorf("marker at the old epoch: %v, want ErrInvalidProducerEpoch", err)
	}
	if _, err := l.AppendTransactional(makeBatch(t, txnBatch(7, 1, 3, 1)), t0); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Errorf("the new epoch must start at sequence 0: %v", err)
	}
	mustAppendTxn(t, l, makeBatch(t, txnBatch(7, 1, 0, 1)))
	// Without an epoch bump the sequence goes on across transactions.
	mustMarker(t, l, 7, 1, true)
	mustAppendTxn(t, l, makeBatch(t, txnBatch(7, 1, 1, 1)))
}

// TestTransactionIndexRecovery: the aborted transactions and the open
// ones survive a clean close, a crash (no close) and the loss of the
// .txnindex files.
func TestTransactionIndexRecovery(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 400
	dir := t.TempDir()
	l := openLog(t, dir, cfg)
	var want []AbortedTxn
	seq := map[int64]int32{}
	for i := range 12 {
		pid := int64(i%3 + 1)
		first := mustAppendTxn(t, l, makeBatch(t, txnBatch(pid, 0, seq[pid], 2))).BaseOffset
		seq[pid] += 2
		mustAppend(t, l, makeBatch(t, plain(1, 1000)))
		abort := i%2 == 0
		off := mustMarker(t, l, pid, 0, !abort)
		if abort {
			want = append(want, AbortedTxn{ProducerID: pid, FirstOffset: first, LastOffset: off, LastStableOffset: off + 1})
		}
	}
	open := mustAppendTxn(t, l, makeBatch(t, txnBatch(9, 0, 0, 1))).BaseOffset
	if len(segmentFiles(t, dir, logSuffix)) < 3 {
		t.Fatal("the test wants several segments")
	}
	check := func(what string, l *Log) {
		t.Helper()
		if _, got := committedOffsets(t, l, 0); !slices.Equal(got, want) {
			t.Errorf("%s: aborted transactions\n%v, want\n%v", what, got, want)
		}
		if got := l.LastStableOffset(); got != open {
			t.Errorf("%s: LSO %d, want %d, the open transaction's first offset", what, got, open)
		}
	}
	check("before close", l)
	crashed := copyDir(t, dir) // as a kill -9 leaves it: no close
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check("after reopen", openLog(t, dir, cfg))
	check("after a crash", openLog(t, crashed, cfg))

	lost := copyDir(t, dir)
	for i, f := range segmentFiles(t, lost, txnIndexSuffix) {
		if i%2 == 0 {
			os.Remove(f)
		} else if err := os.WriteFile(f, []byte("torn"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l = openLog(t, lost, cfg)
	check("after losing the transaction indexes", l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, m := len(segmentFiles(t, lost, txnIndexSuffix)), len(segmentFiles(t, lost, logSuffix)); n != m {
		t.Errorf("%d transaction indexes for %d segments after the rebuild", n, m)
	}
}

// TestTransactionIndexRetention: segments removed by retention take their
// aborted transactions and .txnindex files with them.
func TestTransactionIndexRetention(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 300
	dir := t.TempDir()
	l := openLog(t, dir, cfg)
	for i := range 8 {
		mustAppendTxn(t, l, makeBatch(t, txnBatch(1, 0, int32(i), 1)))
		mustMarker(t, l, 1, 0, false)
	}
	start, err := l.DeleteRecords(l.HighWatermark() - 2)
	if err != nil {
		t.Fatal(err)
	}
	_, aborted := committedOffsets(t, l, start)
	for _, a := range aborted {
		if a.LastOffset < start {
			t.Errorf("aborted transaction %+v below the start offset %d is still listed", a, start)
		}
	}
	for _, f := range segmentFiles(t, dir, txnIndexSuffix) {
		base := filepath.Base(f)
		if _, err := os.Stat(filepath.Join(dir, base[:20]+logSuffix)); err != nil {
			t.Errorf("transaction index %s outlived its segment", base)
		}
	}
}

// TestTransactionPowerCut: a transaction's marker made durable survives a
// power cut with the records before it, and a transaction whose marker
// was not synced is still open after it.
func TestTransactionPowerCut(t *testing.T) {
	fs := vfs.NewStrictMem()
	cfg := testConfig()
	cfg.FS = fs
	l, err := Open("log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustAppendTxn(t, l, makeBatch(t, txnBatch(1, 0, 0, 2)))
	abortAt := mustMarker(t, l, 1, 0, false)
	mustAppendTxn(t, l, makeBatch(t, txnBatch(2, 0, 0, 2)))
	fs.SetIgnoreSyncs(true)
	if _, err := l.AppendMarker(2, 0, true, 0, t0); err != nil {
		t.Fatal(err)
	}
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
	l, err = Open("log", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.LastStableOffset(); got != abortAt+1 {
		t.Errorf("LSO %d after the power cut, want %d: the unsynced commit marker is lost", got, abortAt+1)
	}
	if _, got := committedOffsets(t, l, 0); len(got) != 1 || got[0].LastOffset != abortAt {
		t.Errorf("aborted transactions after the power cut: %v", got)
	}
}

// TestCleanTransactions: the cleaner keeps a key's committed record over
// a later aborted one, and leaves the records of open transactions alone.
func TestCleanTransactions(t *testing.T) {
	l := openLog(t, t.TempDir(), compactConfig())
	ts := time.Now().Add(-time.Hour).UnixMilli()
	txnKeyed := func(pid int64, seq int32, recs ...kv) []byte {
		return changedAttrs(keyedBatch(t, recs, kgo.CompressionCodec{}, pid, seq, ts), attrTransactional)
	}
	mustAppend(t, l, keyedBatch(t, []kv{{"k", []byte("committed")}}, kgo.CompressionCodec{}, -1, 0, ts))
	mustAppendTxn(t, l, txnKeyed(1, 0, kv{"k", []byte("aborted")}))
	mustMarker(t, l, 1, 0, false)
	mustAppendTxn(t, l, txnKeyed(2, 0, kv{"o", []byte("open-1")}))
	for i := range 40 {
		mustAppendTxn(t, l, txnKeyed(2, int32(i+1), kv{"o", fmt.Appendf(bytes.Repeat([]byte("o"), 200), "-%d", i+2)}))
	}
	mustAppend(t, l, keyedBatch(t, []kv{{"x", bytes.Repeat([]byte("x"), 1000)}}, kgo.CompressionCodec{}, -1, 0, ts))
	if len(l.segs) < 3 {
		t.Fatalf("%d segments; the test wants the open transaction to span rolled ones", len(l.segs))
	}
	before := len(readRecords(t, l))
	if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	var ks []string
	opens := 0
	for _, r := range readRecords(t, l) {
		switch r.key {
		case "k":
			ks = append(ks, string(r.value))
		case "o":
			opens++
		}
	}
	if !slices.Contains(ks, "committed") {
		t.Errorf("the key's records after cleaning: %q; its committed record is gone", ks)
	}
	if opens != 41 {
		t.Errorf("%d of the open transaction's 41 records left (of %d records before)", opens, before)
	}
}

// changedAttrs sets attribute bits on a batch and signs it again.
func changedAttrs(b []byte, attrs int16) []byte {
	binary.BigEndian.PutUint16(b[offAttributes:], binary.BigEndian.Uint16(b[offAttributes:])|uint16(attrs))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

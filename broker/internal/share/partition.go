package share

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// recordState is where one record stands in a share partition (KIP-932).
type recordState uint8

const (
	available    recordState = iota // may be acquired by any member
	acquired                        // locked by one member until its deadline
	acknowledged                    // accepted: never delivered again
	archived                        // rejected, or delivered too often: never delivered again
)

// Acknowledgement types of ShareFetch and ShareAcknowledge.
const (
	ackGap     int8 = 0
	ackAccept  int8 = 1
	ackRelease int8 = 2
	ackReject  int8 = 3
	ackRenew   int8 = 4
)

// record is the in-flight state of one offset.
type record struct {
	state      recordState
	deliveries int16
	owner      string    // member holding the lock, while acquired
	deadline   time.Time // lock expiry, while acquired
}

// offsetRange is a run of offsets handed out together: first to last
// inclusive, all with the same delivery count.
type offsetRange struct {
	first, last int64
	deliveries  int16
}

// window is the state of one share partition: the share-partition start
// offset (SPSO, every record below it is done) and the records from there
// up to the share-partition end offset (SPEO, the next record never yet
// acquired). It is not safe for concurrent use; the coordinator's lock
// guards it.
type window struct {
	start int64
	recs  []record // recs[i] is offset start+i
	// archivedTotal counts the records archived since the window was
	// loaded: rejected, or released after their last allowed delivery. It
	// is not stored; metrics read it.
	archivedTotal int64
}

// end returns the share-partition end offset.
func (w *window) end() int64 { return w.start + int64(len(w.recs)) }

// at returns the record at offset, which must be in [start, end).
func (w *window) at(offset int64) *record { return &w.recs[offset-w.start] }

// acquiredCount returns how many records are locked.
func (w *window) acquiredCount() int {
	n := 0
	for i := range w.recs {
		if w.recs[i].state == acquired {
			n++
		}
	}
	return n
}

// count returns how many records of the window are in state s.
func (w *window) count(s recordState) int64 {
	var n int64
	for i := range w.recs {
		if w.recs[i].state == s {
			n++
		}
	}
	return n
}

// acquireAvailable locks up to max available records of the window for
// member and returns them as ranges.
func (w *window) acquireAvailable(member string, max int, deadline time.Time) []offsetRange {
	var out []offsetRange
	for i := 0; i < len(w.recs) && max > 0; i++ {
		r := &w.recs[i]
		if r.state != available {
			continue
		}
		r.state, r.owner, r.deadline = acquired, member, deadline
		r.deliveries++
		max--
		out = appendOffset(out, w.start+int64(i), r.deliveries)
	}
	return out
}

// appendOffset adds offset to ranges, extending the last range when it is
// contiguous and has the same delivery count.
func appendOffset(ranges []offsetRange, offset int64, deliveries int16) []offsetRange {
	return appendRange(ranges, offsetRange{first: offset, last: offset, deliveries: deliveries})
}

// appendRange adds r to ranges, merging it into the last range when they
// are contiguous and have the same delivery count.
func appendRange(ranges []offsetRange, r offsetRange) []offsetRange {
	if n := len(ranges); n > 0 && ranges[n-1].last+1 == r.first && ranges[n-1].deliveries == r.deliveries {
		ranges[n-1].last = r.last
		return ranges
	}
	return append(ranges, r)
}

// extend appends offsets from end() to last to the window, acquired by
// member, or archived when archive is set (control batches, which are
// never delivered).
func (w *window) extend(last int64, member string, deadline time.Time, archive bool) {
	for off := w.end(); off <= last; off++ {
		if archive {
			w.recs = append(w.recs, record{state: archived})
			continue
		}
		w.recs = append(w.recs, record{state: acquired, deliveries: 1, owner: member, deadline: deadline})
	}
}

// errInvalidRecordState is an acknowledgement of a record the member does
// not hold.
var errInvalidRecordState = errors.New("record is not acquired by this member")

// errInvalidRequest is a malformed acknowledgement batch.
var errInvalidRequest = errors.New("invalid acknowledgement batch")

// checkAck validates acknowledging [first, last] by member without
// changing anything. As in Kafka, a batch wholly below the start is
// refused (those records are done, whoever finished them); in a batch
// that straddles the start, the offsets below it pass.
func (w *window) checkAck(member string, first, last int64, types []int8, maxType int8) error {
	if first > last || len(types) == 0 || (len(types) > 1 && int64(len(types)) != last-first+1) {
		return fmt.Errorf("%w: offsets %d-%d with %d types", errInvalidRequest, first, last, len(types))
	}
	for _, t := range types {
		if t < ackGap || t > maxType {
			return fmt.Errorf("%w: acknowledge type %d", errInvalidRequest, t)
		}
	}
	if last >= w.end() {
		return fmt.Errorf("%w: offset %d beyond the acquired records (end %d)", errInvalidRequest, last, w.end())
	}
	if last < w.start {
		return fmt.Errorf("%w: offsets %d-%d are below the start %d", errInvalidRecordState, first, last, w.start)
	}
	for off := max(first, w.start); off <= last; off++ {
		r := w.at(off)
		if r.state != acquired || r.owner != member {
			return fmt.Errorf("%w: offset %d", errInvalidRecordState, off)
		}
	}
	return nil
}

// ack applies a batch that checkAck accepted. It reports whether a record
// became available again.
func (w *window) ack(member string, first, last int64, types []int8, limit int16, lockUntil time.Time) bool {
	freed := false
	for off := max(first, w.start); off <= last; off++ {
		r := w.at(off)
		if r.state != acquired || r.owner != member {
			continue
		}
		switch types[min(int64(len(types)-1), off-first)] {
		case ackAccept:
			*r = record{state: acknowledged, deliveries: r.deliveries}
		case ackGap, ackReject:
			*r = record{state: archived, deliveries: r.deliveries}
			w.archivedTotal++
		case ackRelease:
			freed = w.release(r, limit) || freed
		case ackRenew:
			r.deadline = lockUntil
		}
	}
	return freed
}

// release ends a record's acquisition: it becomes available again, or
// archived once delivered limit times. It reports whether it is available.
func (r *record) release(limit int16) bool {
	if r.deliveries >= limit {
		*r = record{state: archived, deliveries: r.deliveries}
		return false
	}
	*r = record{state: available, deliveries: r.deliveries}
	return true
}

// release releases r, one of w's records, counting it if it is archived.
// It reports whether r is available.
func (w *window) release(r *record, limit int16) bool {
	if r.release(limit) {
		return true
	}
	w.archivedTotal++
	return false
}

// releaseIf releases every acquired record for which match holds. It
// reports whether any record changed.
func (w *window) releaseIf(limit int16, match func(*record) bool) bool {
	changed := false
	for i := range w.recs {
		r := &w.recs[i]
		if r.state == acquired && match(r) {
			w.release(r, limit)
			changed = true
		}
	}
	return changed
}

// releaseMember releases the records member holds.
func (w *window) releaseMember(member string, limit int16) bool {
	return w.releaseIf(limit, func(r *record) bool { return r.owner == member })
}

// expire releases the records whose lock has expired by now.
func (w *window) expire(now time.Time, limit int16) bool {
	return w.releaseIf(limit, func(r *record) bool { return !now.Before(r.deadline) })
}

// advance moves the start past records that are done.
func (w *window) advance() {
	i := 0
	for i < len(w.recs) && (w.recs[i].state == acknowledged || w.recs[i].state == archived) {
		i++
	}
	if i > 0 {
		w.recs = append(w.recs[:0], w.recs[i:]...)
		w.start += int64(i)
	}
}

// skipTo drops the records below offset, which the log no longer has.
func (w *window) skipTo(offset int64) {
	if offset <= w.start {
		return
	}
	if offset >= w.end() {
		w.start, w.recs = offset, w.recs[:0]
		return
	}
	w.recs = append(w.recs[:0], w.recs[offset-w.start:]...)
	w.start = offset
}

// reset moves the window to offset, forgetting every record's state.
func (w *window) reset(offset int64) {
	w.start, w.recs = offset, w.recs[:0]
}

// Persisted form of a window: the start offset, the window length, then
// runs of records that matter after a restart (acknowledged, archived,
// or delivered at least once), each as offset delta, length, state and
// delivery count. Acquired records are stored as available with their
// delivery count: locks do not survive a restart.
const windowFormat = 1

// marshal encodes the durable part of the window.
func (w *window) marshal(dst []byte) []byte {
	dst = append(dst, windowFormat)
	dst = binary.AppendVarint(dst, w.start)
	dst = binary.AppendUvarint(dst, uint64(len(w.recs)))
	durable := func(r record) (recordState, int16) {
		if r.state == acquired {
			return available, r.deliveries
		}
		return r.state, r.deliveries
	}
	for i := 0; i < len(w.recs); {
		st, dc := durable(w.recs[i])
		j := i + 1
		for j < len(w.recs) {
			s2, d2 := durable(w.recs[j])
			if s2 != st || d2 != dc {
				break
			}
			j++
		}
		if st != available || dc != 0 {
			dst = binary.AppendUvarint(dst, uint64(i))
			dst = binary.AppendUvarint(dst, uint64(j-i))
			dst = append(dst, byte(st))
			dst = binary.AppendUvarint(dst, uint64(dc))
		}
		i = j
	}
	return dst
}

// unmarshalWindow decodes what marshal encoded.
func unmarshalWindow(src []byte) (window, error) {
	var w window
	if len(src) == 0 || src[0] != windowFormat {
		return w, errors.New("unknown share partition state format")
	}
	src = src[1:]
	bad := errors.New("truncated share partition state")
	start, n := binary.Varint(src)
	if n <= 0 {
		return w, bad
	}
	src = src[n:]
	length, n := binary.Uvarint(src)
	if n <= 0 || length > maxWindowRecords {
		return w, bad
	}
	src = src[n:]
	w.start, w.recs = start, make([]record, length)
	for len(src) > 0 {
		var vals [2]uint64
		for k := range vals {
			v, n := binary.Uvarint(src)
			if n <= 0 {
				return w, bad
			}
			vals[k], src = v, src[n:]
		}
		if len(src) == 0 {
			return w, bad
		}
		st := recordState(src[0])
		dc, n := binary.Uvarint(src[1:])
		if n <= 0 || st > archived || st == acquired || vals[0]+vals[1] > length {
			return w, bad
		}
		src = src[1+n:]
		for i := vals[0]; i < vals[0]+vals[1]; i++ {
			w.recs[i] = record{state: st, deliveries: int16(dc)}
		}
	}
	return w, nil
}

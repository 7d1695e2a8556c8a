package engine

import (
	"time"

	"github.com/riffle-stream/riffle/processor"
)

// eventTime sets r's timestamp to what the source's extractor returns for
// it, given the partition time (the largest timestamp extracted so far
// from the record's partition) and the task's wall clock. A timestamp
// before the epoch drops the record, counted as dropped, as Kafka Streams'
// LogAndSkipOnInvalidTimestamp does; eventTime then returns false. A
// panicking extractor is a processing error.
func (t *Task) eventTime(src *instance, rec InputRecord, r *processor.Record[any, any],
	extract func(processor.Record[any, any], time.Time, time.Time) time.Time) (bool, error) {
	var ts time.Time
	if err := src.call(func() error {
		ts = extract(*r, t.partTime[rec.Topic], t.cfg.Now())
		return nil
	}); err != nil {
		return false, t.handle(src.n.Name, t.cfg.ProcessingErrors, err)
	}
	if ts.UnixMilli() < 0 {
		t.cfg.Logger.Warn("skipping record with a negative extracted timestamp", "task", t.cfg.ID.String(),
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "timestamp", ts)
		if t.cfg.Dropped != nil {
			t.cfg.Dropped()
		}
		return false, nil
	}
	if t.partTime == nil {
		t.partTime = make(map[string]time.Time)
	}
	if ts.After(t.partTime[rec.Topic]) {
		t.partTime[rec.Topic] = ts
	}
	r.Timestamp = ts
	return true, nil
}

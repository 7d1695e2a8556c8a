package topology

import (
	"time"

	"github.com/riffle-stream/riffle/processor"
)

// TimestampExtractor gives a record read by a source its event time (Kafka
// Streams' TimestampExtractor). r holds the deserialized key and value and
// the timestamp the record carries; partitionTime is the largest timestamp
// extracted so far from the record's partition, or the zero time. The
// result is the record's timestamp downstream: it drives stream time,
// windows and stream-time punctuators. A time before the epoch drops the
// record, counted as dropped (Kafka Streams'
// LogAndSkipOnInvalidTimestamp); a panic is a processing error.
type TimestampExtractor func(r processor.Record[any, any], partitionTime time.Time) time.Time

type timestampsOpt func(r processor.Record[any, any], partitionTime, now time.Time) time.Time

func (t timestampsOpt) apply(o *options) { o.timestamps = t }
func (timestampsOpt) sourceOpt()         {}

// WithTimestampExtractor makes a source take each record's event time from
// e. Default: the timestamp the record carries (Kafka Streams'
// default.timestamp.extractor, here without failing on negative
// timestamps).
func WithTimestampExtractor(e TimestampExtractor) SourceOpt {
	return timestampsOpt(func(r processor.Record[any, any], partitionTime, _ time.Time) time.Time {
		return e(r, partitionTime)
	})
}

// WallClockTimestamps makes a source stamp each record with the wall-clock
// time at which it is processed (Kafka Streams'
// WallclockTimestampExtractor); the streamstest driver uses its own clock.
func WallClockTimestamps() SourceOpt {
	return timestampsOpt(func(_ processor.Record[any, any], _, now time.Time) time.Time { return now })
}

// setTimestamps gives the source node its timestamp extractor, if o has
// one.
func (b *Builder) setTimestamps(source string, o options) {
	if n, ok := b.nodes[source]; ok && o.timestamps != nil {
		n.ExtractTimestamp = o.timestamps
	}
}

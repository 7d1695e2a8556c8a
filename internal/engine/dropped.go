package engine

// DropRecorder is implemented by the contexts a Task gives processors:
// RecordDropped counts a record a windowed operation dropped, once per
// window it was late for, or because it had a null key or value or a
// negative timestamp (Kafka Streams' dropped-records metric).
type DropRecorder interface {
	RecordDropped()
}

// RecordDropped implements DropRecorder.
func (c nodeContext) RecordDropped() {
	if f := c.in.t.cfg.Dropped; f != nil {
		f()
	}
}

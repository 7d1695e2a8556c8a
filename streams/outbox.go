package streams

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// outboxBatch is how many records a thread gathers before it hands them
// to its outbox's goroutine.
const outboxBatch = 512

// An outbox carries a thread's records to a goroutine of its own that
// gives them to franz-go's Produce (partitioning, batching, buffer
// accounting), so that this work runs beside the thread's processing, on
// the other core. Records are produced in the order they were added.
//
// Only the thread calls an outbox's methods. It drains the outbox before
// anything that needs every record handed to the client: a Flush, a
// transaction's End, closing or replacing the client.
type outbox struct {
	gathered []outgoing
	batches  chan outgoingBatch
	free     chan []outgoing // gathered slices the goroutine is done with
	done     chan struct{}   // closed when the goroutine returns
}

type outgoing struct {
	r       *kgo.Record
	promise func(*kgo.Record, error)
}

type outgoingBatch struct {
	cl      *kgo.Client
	recs    []outgoing
	drained chan struct{} // closed once recs are produced; nil if not waited for
}

func newOutbox() *outbox {
	o := &outbox{
		gathered: make([]outgoing, 0, outboxBatch),
		batches:  make(chan outgoingBatch, 4),
		free:     make(chan []outgoing, 5),
		done:     make(chan struct{}),
	}
	go o.run()
	return o
}

func (o *outbox) run() {
	defer close(o.done)
	for b := range o.batches {
		for i, g := range b.recs {
			b.cl.Produce(context.Background(), g.r, g.promise)
			b.recs[i] = outgoing{}
		}
		if b.drained != nil {
			close(b.drained)
		}
		select {
		case o.free <- b.recs[:0]:
		default:
		}
	}
}

// add gathers r for cl, and hands what it gathered over when there is a
// batch of it.
func (o *outbox) add(cl *kgo.Client, r *kgo.Record, promise func(*kgo.Record, error)) {
	o.gathered = append(o.gathered, outgoing{r, promise})
	if len(o.gathered) >= outboxBatch {
		o.ship(cl, nil)
	}
}

// ship hands what the thread gathered over to be produced by cl; drained,
// if not nil, is closed once it is.
func (o *outbox) ship(cl *kgo.Client, drained chan struct{}) {
	if len(o.gathered) == 0 && drained == nil {
		return
	}
	o.batches <- outgoingBatch{cl: cl, recs: o.gathered, drained: drained}
	select {
	case o.gathered = <-o.free:
	default:
		o.gathered = make([]outgoing, 0, outboxBatch)
	}
}

// drain returns once every record added has been given to cl's Produce.
func (o *outbox) drain(cl *kgo.Client) {
	drained := make(chan struct{})
	o.ship(cl, drained)
	<-drained
}

// discard drops what the thread gathered and has not handed over.
func (o *outbox) discard() {
	clear(o.gathered)
	o.gathered = o.gathered[:0]
}

// close drains the outbox and stops its goroutine.
func (o *outbox) close(cl *kgo.Client) {
	o.drain(cl)
	close(o.batches)
	<-o.done
}

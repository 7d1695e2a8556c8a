package broker

// maxKeptBuffer bounds the buffers a connection keeps for reuse, so one
// huge request or fetch does not pin its memory for the connection's life.
const maxKeptBuffer = 8 << 20

// bufferCache keeps one buffer for reuse: a connection has one for its
// produce frames and one for its fetch reads, the two large allocations
// of the data path. Unlike a sync.Pool it survives garbage collections,
// which large fetches make frequent. It is safe for concurrent use.
type bufferCache chan *[]byte

func newBufferCache() bufferCache { return make(bufferCache, 1) }

// get returns a buffer of length n, reusing the kept one if there is one.
func (c bufferCache) get(n int) *[]byte {
	var p *[]byte
	select {
	case p = <-c:
	default:
		p = new([]byte)
	}
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	*p = (*p)[:n]
	return p
}

// put offers p for reuse; nothing may use it afterwards.
func (c bufferCache) put(p *[]byte) {
	if cap(*p) > maxKeptBuffer {
		return
	}
	select {
	case c <- p:
	default:
	}
}

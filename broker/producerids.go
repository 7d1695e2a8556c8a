package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// producerIDBlock is how many producer ids one durable write reserves.
const producerIDBlock = 1000

// producerIDs hands out producer ids that are never reused, not even
// after a crash: a block is reserved on disk before its first id is used,
// so a restart skips the rest of the block.
type producerIDs struct {
	path string

	mu          sync.Mutex
	nextID, end int64
}

func openProducerIDs(path string) (*producerIDs, error) {
	p := &producerIDs{path: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read producer id block: %w", err)
	case len(data) != 8:
		return nil, fmt.Errorf("read producer id block: %s has %d bytes, want 8", path, len(data))
	default:
		p.nextID = int64(binary.BigEndian.Uint64(data))
		p.end = p.nextID
	}
	return p, nil
}

func (p *producerIDs) next() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nextID == p.end {
		end := p.end + producerIDBlock
		if err := writeFileSync(p.path, binary.BigEndian.AppendUint64(nil, uint64(end))); err != nil {
			return 0, fmt.Errorf("reserve producer ids: %w", err)
		}
		p.end = end
	}
	id := p.nextID
	p.nextID++
	return id, nil
}

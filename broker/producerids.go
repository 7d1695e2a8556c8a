package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
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
	default:
		end, err := decodeProducerIDBlock(data)
		if err != nil {
			return nil, fmt.Errorf("read producer id block %s: %w", path, err)
		}
		p.nextID, p.end = end, end
	}
	return p, nil
}

// decodeProducerIDBlock decodes the file's content: the end of the last
// reserved block, big-endian. A file that does not decode stops the
// broker: guessing the next id could hand out one already in use, and an
// idempotent producer given another's id would see its batches dropped
// as duplicates.
func decodeProducerIDBlock(data []byte) (int64, error) {
	if len(data) != 8 {
		return 0, fmt.Errorf("%d bytes, want 8", len(data))
	}
	end := int64(binary.BigEndian.Uint64(data))
	if end < 0 || end > math.MaxInt64-producerIDBlock {
		return 0, fmt.Errorf("block end %d out of range", end)
	}
	return end, nil
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

package commitlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Bounds on what reading a batch's records may cost.
const (
	// maxRecordsBytes bounds the records section of a batch after
	// decompression. Records are read as a stream, so memory stays small
	// whatever the size; the bound caps the CPU a small compressed batch
	// (a zip bomb) can make the broker spend. Kafka has no such bound.
	maxRecordsBytes = 256 << 20
	// maxZstdWindow bounds the window a zstd frame may declare, which the
	// decoder allocates up front. 8 MiB covers every level up to 19; Java
	// producers at levels 20 to 22 declare larger windows and are refused.
	maxZstdWindow = 8 << 20
	// maxSnappyRatio bounds the expansion of one snappy block: no snappy
	// element decodes to more than 22 times its encoded size (a 3-byte
	// copy of 64 bytes), so a block declaring more is corrupt, and it is
	// refused before its declared length is allocated.
	maxSnappyRatio = 22
	// walkBufferSize is the size of the buffer decompressed records are
	// read through.
	walkBufferSize = 16 << 10
	// keepBufferSize is the largest snappy output buffer kept for reuse.
	keepBufferSize = 1 << 20
)

var (
	// errRecordsTooLarge reports records that decompress beyond maxRecordsBytes.
	errRecordsTooLarge = fmt.Errorf("%w: records decompress to more than %d bytes", ErrRecordTooLarge, maxRecordsBytes)
	// errNoMoreData reports reading past the end of the records section.
	errNoMoreData = errors.New("the records section ends early")
)

// recordMeta is what the log needs of a record; keys, values and headers
// are skipped, never copied.
type recordMeta struct {
	timestampDelta int64
	offsetDelta    int32
	nullKey        bool
	nullValue      bool
	keyHash        uint64 // of a non-null key, when the walker hashes keys
}

// recordWalker reads the records section of a v2 batch one record at a
// time, checking each record's structure as Kafka's DefaultRecord does.
// It is the one record reader of the package: the validator, the
// timestamp lookups and the cleaner use it. Compressed sections are
// decompressed as a stream through a small buffer, so memory does not
// grow with the decompressed size, nor with the size of a key or a
// record: keys are hashed as they stream by (hashKeys), and the cleaner
// copies the records it keeps by teeing the bytes read to its compressor
// (setTee). The zero value is ready for open; close releases its
// decoders.
type recordWalker struct {
	buf      []byte    // unread bytes, a suffix of data or of *scratch
	src      io.Reader // the decompressor refilling buf; nil when uncompressed
	scratch  *[]byte   // pooled backing store of buf when compressed
	consumed int64     // bytes of the records section read so far
	inflated int64     // bytes the decompressor produced so far
	release  func()    // returns the decompressor to its pool

	// hashKeys makes next set recordMeta.keyHash, with seed.
	hashKeys bool
	seed     maphash.Seed
	kh       maphash.Hash // hashes a key that spans refills of buf

	// While teeing, the bytes read are written to tee. mark is the
	// part of the current window not yet written or skipped: its bytes
	// before buf have been read.
	tee    io.Writer
	teeing bool
	mark   []byte
	teeErr error
}

var walkBuffers = sync.Pool{New: func() any { b := make([]byte, walkBufferSize); return &b }}

// open starts reading data, the records section of a batch compressed
// with codec (attributes bits 0-2).
func (w *recordWalker) open(codec int16, data []byte) error {
	if codec == 0 {
		w.buf, w.mark = data, data
		return nil
	}
	src, release, err := decompress(codec, data)
	if err != nil {
		return err
	}
	w.src, w.release = src, release
	w.scratch = walkBuffers.Get().(*[]byte)
	w.buf = (*w.scratch)[:0]
	w.mark = w.buf
	return nil
}

// close releases the decoders and buffers open took.
func (w *recordWalker) close() {
	if w.release != nil {
		w.release()
	}
	if w.scratch != nil {
		walkBuffers.Put(w.scratch)
	}
	*w = recordWalker{}
}

// fill refills an empty buf from the decompressor. It returns
// errNoMoreData at the end of the records section.
func (w *recordWalker) fill() error {
	if w.src == nil {
		return errNoMoreData
	}
	w.flushTee()
	for range 100 {
		n, err := w.src.Read((*w.scratch)[:cap(*w.scratch)])
		w.inflated += int64(n)
		if w.inflated > maxRecordsBytes {
			return errRecordsTooLarge
		}
		if n > 0 {
			w.buf = (*w.scratch)[:n]
			w.mark = w.buf
			return nil
		}
		switch {
		case err == io.EOF:
			return errNoMoreData
		case errors.Is(err, errRecordsTooLarge):
			return err
		case err != nil:
			return fmt.Errorf("decompress: %v", err)
		}
	}
	return fmt.Errorf("decompress: %v", io.ErrNoProgress)
}

// setTee flushes what was read so far, written to tee if teeing was on,
// and turns teeing on or off for what is read next.
func (w *recordWalker) setTee(on bool) {
	w.flushTee()
	w.teeing = on
}

// flushTee writes the bytes read from the current window since the last
// flush to tee if teeing is on, and forgets them.
func (w *recordWalker) flushTee() {
	if read := w.mark[:len(w.mark)-len(w.buf)]; w.teeing && len(read) > 0 && w.teeErr == nil {
		_, w.teeErr = w.tee.Write(read)
	}
	w.mark = w.buf
}

func (w *recordWalker) byte() (byte, error) {
	if len(w.buf) == 0 {
		if err := w.fill(); err != nil {
			return 0, err
		}
	}
	c := w.buf[0]
	w.buf = w.buf[1:]
	w.consumed++
	return c, nil
}

// varint reads a zigzag varint of at most 64 bits.
func (w *recordWalker) varint() (int64, error) {
	if len(w.buf) >= binary.MaxVarintLen64 {
		v, n := binary.Varint(w.buf)
		if n <= 0 {
			return 0, errors.New("malformed varint")
		}
		w.buf = w.buf[n:]
		w.consumed += int64(n)
		return v, nil
	}
	var ux uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := w.byte()
		if err != nil {
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break
		}
		ux |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return int64(ux>>1) ^ -int64(ux&1), nil
		}
	}
	return 0, errors.New("malformed varint")
}

// varint32 reads a zigzag varint that must fit in 32 bits.
func (w *recordWalker) varint32(what string) (int32, error) {
	v, err := w.varint()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("%s %d overflows 32 bits", what, v)
	}
	return int32(v), nil
}

// skip reads past n bytes, hashing them into h if it is not nil.
func (w *recordWalker) skip(n int64, h *maphash.Hash) error {
	for n > 0 {
		if len(w.buf) == 0 {
			if err := w.fill(); err != nil {
				return err
			}
		}
		k := min(n, int64(len(w.buf)))
		if h != nil {
			h.Write(w.buf[:k])
		}
		w.buf = w.buf[k:]
		w.consumed += k
		n -= k
	}
	return nil
}

// bytesField skips a length-prefixed byte string ending by end, hashing
// it into h if h is not nil; a length of -1 (null) is allowed when
// nullable. It returns the length, -1 for null.
func (w *recordWalker) bytesField(what string, end int64, nullable bool, h *maphash.Hash) (int32, error) {
	n, err := w.varint32(what)
	if err != nil {
		return 0, err
	}
	switch {
	case n == -1 && nullable:
		return -1, nil
	case n < 0:
		return 0, fmt.Errorf("%s length %d", what, n)
	case int64(n) > end-w.consumed:
		return 0, fmt.Errorf("%s of %d bytes overruns its record", what, n)
	}
	return n, w.skip(int64(n), h)
}

// next reads one record.
func (w *recordWalker) next() (recordMeta, error) {
	var m recordMeta
	length, err := w.varint32("record length")
	if err != nil {
		return m, err
	}
	if length <= 0 {
		return m, fmt.Errorf("record length %d", length)
	}
	end := w.consumed + int64(length)
	if _, err := w.byte(); err != nil { // attributes, unused in v2
		return m, err
	}
	if m.timestampDelta, err = w.varint(); err != nil {
		return m, fmt.Errorf("timestamp delta: %w", err)
	}
	if m.offsetDelta, err = w.varint32("offset delta"); err != nil {
		return m, err
	}
	var kh *maphash.Hash
	if w.hashKeys {
		kh = &w.kh
		kh.SetSeed(w.seed)
	}
	keyLen, err := w.bytesField("key", end, true, kh)
	if err != nil {
		return m, err
	}
	m.nullKey = keyLen == -1
	if kh != nil && !m.nullKey {
		m.keyHash = kh.Sum64()
	}
	valueLen, err := w.bytesField("value", end, true, nil)
	if err != nil {
		return m, err
	}
	m.nullValue = valueLen == -1
	headers, err := w.varint32("header count")
	if err != nil {
		return m, err
	}
	if headers < 0 || int64(headers) > end-w.consumed {
		return m, fmt.Errorf("header count %d", headers)
	}
	for range headers {
		if _, err := w.bytesField("header key", end, false, nil); err != nil {
			return m, err
		}
		if _, err := w.bytesField("header value", end, true, nil); err != nil {
			return m, err
		}
	}
	if w.consumed != end {
		return m, fmt.Errorf("record length %d, its fields take %d bytes", length, int64(length)+w.consumed-end)
	}
	return m, nil
}

// atEnd reports whether the records section has been read completely.
func (w *recordWalker) atEnd() (bool, error) {
	if len(w.buf) > 0 {
		return false, nil
	}
	switch err := w.fill(); {
	case errors.Is(err, errNoMoreData):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}

// Pooled decompressors, each with the reader of its input.
type (
	gzipSource struct {
		gz  gzip.Reader
		src bytes.Reader
	}
	lz4Source struct {
		lz  *lz4.Reader
		src bytes.Reader
	}
	zstdSource struct {
		zd  *zstd.Decoder
		err error // from creating zd
		src bytes.Reader
	}
)

var (
	gzipSources = sync.Pool{New: func() any { return new(gzipSource) }}
	lz4Sources  = sync.Pool{New: func() any { return &lz4Source{lz: lz4.NewReader(nil)} }}
	zstdSources = sync.Pool{New: func() any {
		zd, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1), // decode on the caller's goroutine
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecoderMaxMemory(maxRecordsBytes))
		return &zstdSource{zd: zd, err: err}
	}}
	snappySources = sync.Pool{New: func() any { return new(snappySource) }}
)

// decompress returns a stream of data decompressed with codec and a
// function that returns the stream's decoder to its pool.
func decompress(codec int16, data []byte) (io.Reader, func(), error) {
	switch codec {
	case 1:
		s := gzipSources.Get().(*gzipSource)
		s.src.Reset(data)
		if err := s.gz.Reset(&s.src); err != nil {
			gzipSources.Put(s)
			return nil, nil, err // its text starts with "gzip: "
		}
		return &s.gz, func() { gzipSources.Put(s) }, nil
	case 2:
		s := snappySources.Get().(*snappySource)
		s.reset(data)
		return s, func() { s.release() }, nil
	case 3:
		s := lz4Sources.Get().(*lz4Source)
		s.src.Reset(data)
		s.lz.Reset(&s.src)
		return s.lz, func() { lz4Sources.Put(s) }, nil
	case 4:
		s := zstdSources.Get().(*zstdSource)
		if s.err != nil {
			return nil, nil, fmt.Errorf("zstd decoder: %v", s.err)
		}
		s.src.Reset(data)
		if err := s.zd.Reset(&s.src); err != nil {
			zstdSources.Put(s)
			return nil, nil, fmt.Errorf("zstd: %v", err)
		}
		return s.zd, func() {
			s.zd.Reset(nil) // drops the reference to data
			zstdSources.Put(s)
		}, nil
	}
	return nil, nil, fmt.Errorf("unknown compression codec %d", codec)
}

// xerialMagic starts the snappy framing of the Java client (snappy-java's
// stream format): the magic, a 4-byte version and a 4-byte minimum
// compatible version, then blocks, each a 4-byte big-endian length and a
// raw snappy block. Without it, the data is one raw snappy block, as
// franz-go and librdkafka write it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

// snappySource decodes snappy data, raw or xerial framed, a block at a
// time. It accepts only standard snappy, as the Java client's decoder
// does, not s2's extensions.
type snappySource struct {
	in      []byte // blocks not yet decoded
	xerial  bool
	out     []byte // the decoded block
	pending []byte // the part of out not yet read
	budget  int64  // decoded bytes still allowed
}

func (s *snappySource) reset(data []byte) {
	s.in, s.xerial, s.pending, s.budget = data, false, nil, maxRecordsBytes
	if len(data) >= xerialHeaderSize && bytes.HasPrefix(data, xerialMagic) {
		s.in, s.xerial = data[xerialHeaderSize:], true
	}
}

func (s *snappySource) release() {
	s.in, s.pending = nil, nil
	if cap(s.out) > keepBufferSize {
		s.out = nil
	}
	snappySources.Put(s)
}

func (s *snappySource) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if len(s.in) == 0 {
			return 0, io.EOF
		}
		block := s.in
		if s.xerial {
			if len(s.in) < 4 {
				return 0, errors.New("snappy: truncated xerial block length")
			}
			n := binary.BigEndian.Uint32(s.in)
			if uint64(n) > uint64(len(s.in)-4) {
				return 0, fmt.Errorf("snappy: xerial block of %d bytes overruns the data", n)
			}
			block, s.in = s.in[4:4+n], s.in[4+n:]
		} else {
			s.in = nil
		}
		n, err := snappy.DecodedLen(block)
		switch {
		case err != nil:
			return 0, fmt.Errorf("snappy: %v", err)
		case n > maxSnappyRatio*len(block):
			return 0, fmt.Errorf("snappy: a block of %d bytes cannot decode to the %d it declares", len(block), n)
		case int64(n) > s.budget:
			return 0, errRecordsTooLarge
		}
		s.budget -= int64(n)
		if s.out, err = snappy.DecodeStrict(s.out[:0], block); err != nil {
			return 0, fmt.Errorf("snappy: %v", err)
		}
		s.pending = s.out
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

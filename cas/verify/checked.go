package verify

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/sealcache/sealcache/cas"
)

// The checked format: how plain CAS blobs are stored (format version 1).
//
//	header   8 bytes: "sealcrc" and the version byte 1
//	block 0  64 KiB of the blob, then the CRC-32C of the block (4 bytes, little-endian)
//	block 1  the next 64 KiB, then its CRC
//	...
//	last     the rest of the blob (0 to 64 KiB - 1 bytes), then its CRC
//
// Every block but the last holds exactly blockSize bytes, and the last is
// always shorter, even empty: a blob of n bytes has n/blockSize+1 blocks
// and is stored in checkedSize(n) bytes. So the reader knows where every
// block starts and how long it is, and an object cut off at a block
// boundary lacks its short last block and is caught.
//
// A block's CRC covers a seed that binds it to the blob (the digest
// function and hash), the block's bytes, and then its index: a block of
// another blob, or of another place in this one, does not check out.
//
// Why not re-hash the blob on every read, as digests allow: SHA-256 runs
// at about 1.8 GB/s on a core here, and a large download spent more CPU on
// re-hashing than on anything else. CRC-32C runs at over 10 GB/s, and
// because each block is checked on its own, a read from an offset checks
// only what it serves, and nothing is held back. The digest is still
// checked in full on every upload. What a CRC does not do is resist a
// forger: someone who can write the data directory can replace a blob and
// its CRCs alike. The digest did not protect against that either (the
// same person can change the server), so nothing is lost; sealed objects
// (CMEK) are authenticated with their key as before.
//
// Objects stored before this format (the blob's bytes alone) stay
// readable: their stored length is the digest's size, never a checked
// size, and they are checked by re-hashing them as before. For HTTP blobs,
// whose size the key does not hold, the header tells the two apart.
const (
	blockSize     = 64 << 10
	crcSize       = 4
	headerSize    = 8
	checkedFormat = 1
)

var checkedHeader = [headerSize]byte{'s', 'e', 'a', 'l', 'c', 'r', 'c', checkedFormat}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkedSize is the stored length of a blob of n bytes.
func checkedSize(n int64) int64 {
	return headerSize + n + crcSize*(n/blockSize+1)
}

// checkedPlainSize inverts checkedSize; ok is false for a length no blob
// is stored in.
func checkedPlainSize(stored int64) (n int64, ok bool) {
	rest := stored - headerSize
	if rest < crcSize {
		return 0, false
	}
	full, last := rest/(blockSize+crcSize), rest%(blockSize+crcSize)
	if last < crcSize {
		return 0, false
	}
	return full*blockSize + last - crcSize, true
}

// crcSeed is the CRC state every block of the blob d starts from.
func crcSeed(d cas.Digest) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(d.Function))
	seed := crc32.Update(0, castagnoli, []byte("sealcache checked blob v1\x00"))
	seed = crc32.Update(seed, castagnoli, b[:])
	return crc32.Update(seed, castagnoli, []byte(d.Hash))
}

// finishBlock ends a block's CRC with its index.
func finishBlock(crc uint32, index int64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(index))
	return crc32.Update(crc, castagnoli, b[:])
}

// checkingWriter is a reader of the checked format of what src yields: the
// header, then each block followed by its CRC. Blob bytes are read straight
// into the caller's buffer; only the CRCs are added. An error from src
// (an upload that does not match its digest) is passed on, so a store
// given this reader stores nothing.
type checkingWriter struct {
	src     io.Reader
	seed    uint32
	crc     uint32 // of the current block so far
	inBlock int    // bytes of the current block passed on
	index   int64  // of the current block
	pending []byte // header or CRC bytes not yet passed on
	tmp     [2 * crcSize]byte
	eof     bool // src is done and the last CRC is in pending
}

func newCheckingWriter(src io.Reader, d cas.Digest) *checkingWriter {
	seed := crcSeed(d)
	return &checkingWriter{src: src, seed: seed, crc: seed, pending: checkedHeader[:]}
}

func (w *checkingWriter) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(w.pending) > 0 {
			c := copy(p[n:], w.pending)
			w.pending = w.pending[c:]
			n += c
			continue
		}
		if w.eof {
			break
		}
		want := min(len(p)-n, blockSize-w.inBlock)
		got, err := w.src.Read(p[n : n+want])
		w.crc = crc32.Update(w.crc, castagnoli, p[n:n+got])
		w.inBlock += got
		n += got
		if w.inBlock == blockSize {
			w.endBlock()
		}
		if err == io.EOF {
			w.endBlock() // the last block: shorter than blockSize, maybe empty
			w.eof = true
			continue
		}
		if err != nil {
			return n, err
		}
		if got < want {
			break // return what is ready rather than wait for more
		}
	}
	if n == 0 && w.eof {
		return 0, io.EOF
	}
	return n, nil
}

// endBlock queues the current block's CRC and starts the next block. At
// most two CRCs are ever pending: a full block's and the empty last one's.
func (w *checkingWriter) endBlock() {
	kept := copy(w.tmp[:], w.pending)
	w.pending = binary.LittleEndian.AppendUint32(w.tmp[:kept], finishBlock(w.crc, w.index))
	w.index++
	w.inBlock = 0
	w.crc = w.seed
}

// blockBufs hold one block and its CRC, for reads that do not take whole
// blocks.
var blockBufs = sync.Pool{New: func() any { b := make([]byte, blockSize+crcSize); return &b }}

// checkedReader serves a blob from its checked form, a block at a time:
// no byte of a block is handed out before the whole block checked out.
// The first bad block ends the read with an error wrapping ErrCorrupt.
type checkedReader struct {
	src   io.ReadCloser // positioned at the start of block index
	seed  uint32
	size  int64 // of the blob
	index int64 // next block to read
	last  int64 // index of the last block
	skip  int   // bytes of the next block before the read offset
	cur   []byte
	bufp  *[]byte
	err   error
	fail  func(error) // drops the corrupt object
}

// checkedStart is where a read of the checked form of a blob from offset
// starts: the stored offset of the block that holds offset.
func checkedStart(offset int64) int64 {
	return headerSize + offset/blockSize*(blockSize+crcSize)
}

func newCheckedReader(src io.ReadCloser, d cas.Digest, size, offset int64, fail func(error)) *checkedReader {
	return &checkedReader{
		src: src, seed: crcSeed(d), size: size,
		index: offset / blockSize, last: size / blockSize, skip: int(offset % blockSize),
		fail: fail,
	}
}

// blockLen is the length of block i.
func (r *checkedReader) blockLen(i int64) int {
	if i < r.last {
		return blockSize
	}
	return int(r.size % blockSize)
}

func (r *checkedReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.cur) > 0 {
			c := copy(p[n:], r.cur)
			r.cur = r.cur[c:]
			n += c
			continue
		}
		if r.err != nil {
			break
		}
		if r.index > r.last {
			r.err = io.EOF
			break
		}
		blen := r.blockLen(r.index)
		if r.skip == 0 && len(p)-n >= blen+crcSize {
			// Whole block into the caller's buffer: the CRC lands past what
			// is handed out, which io.Reader allows as scratch space.
			if !r.readBlock(p[n : n+blen+crcSize]) {
				break
			}
			n += blen
			continue
		}
		if r.bufp == nil {
			r.bufp = blockBufs.Get().(*[]byte)
		}
		buf := (*r.bufp)[:blen+crcSize]
		if !r.readBlock(buf) {
			break
		}
		r.cur = buf[r.skip:blen]
		r.skip = 0
	}
	if n > 0 {
		return n, nil
	}
	return 0, r.err
}

// readBlock reads the next block and its CRC into b and checks it.
func (r *checkedReader) readBlock(b []byte) bool {
	if _, err := io.ReadFull(r.src, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			r.corrupt(fmt.Errorf("block %d is cut short", r.index))
		} else {
			r.err = err // a read failure, not corruption
		}
		return false
	}
	data, sum := b[:len(b)-crcSize], b[len(b)-crcSize:]
	if finishBlock(crc32.Update(r.seed, castagnoli, data), r.index) != binary.LittleEndian.Uint32(sum) {
		r.corrupt(fmt.Errorf("block %d does not match its CRC", r.index))
		return false
	}
	r.index++
	return true
}

func (r *checkedReader) corrupt(cause error) {
	r.err = fmt.Errorf("%w: %w", ErrCorrupt, cause)
	r.fail(r.err)
}

// Close gives the block buffer back and closes src; the reader must not
// be used after.
func (r *checkedReader) Close() error {
	if r.bufp != nil {
		blockBufs.Put(r.bufp)
		r.bufp, r.cur = nil, nil
	}
	return r.src.Close()
}

// isCheckedHeader reports whether b starts with the checked format's header.
func isCheckedHeader(b []byte) bool { return bytes.HasPrefix(b, checkedHeader[:]) }

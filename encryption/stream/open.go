package stream

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// ErrOffsetPastEnd is returned when a read starts beyond the plaintext.
var ErrOffsetPastEnd = errors.New("read offset is past the end of the sealed object")

// Reader opens a sealed object chunk by chunk. It returns only plaintext of
// chunks that authenticated; the first bad chunk ends the stream with an
// error wrapping ErrCorrupt. Errors from the source are returned unchanged.
type Reader struct {
	src      io.Reader
	aead     cipher.AEAD
	keyID    string
	ad       []byte
	index    uint64
	skip     int64
	header   bool   // the header is still to be read and checked
	buf      []byte // one stored chunk plus one look-ahead byte
	look     byte
	hasLook  bool
	plain    []byte // opened bytes not yet returned
	lastSeen bool
	err      error
}

// NewReader opens the sealed object read from src. For a read from the
// start pass Start{} and src positioned at stored offset 0; otherwise pass
// StartAt(keyID, offset) and src positioned at its StoredOffset.
func NewReader(src io.Reader, aead cipher.AEAD, keyID string, binding []byte, start Start) *Reader {
	return &Reader{
		src:    src,
		aead:   aead,
		keyID:  keyID,
		ad:     adPrefix(keyID, binding),
		index:  start.Chunk,
		skip:   start.Skip,
		header: start.Chunk == 0,
		buf:    make([]byte, storedChunk()+1),
	}
}

func (r *Reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.lastSeen {
			return 0, io.EOF
		}
		if r.err = r.next(); r.err != nil {
			clear(r.buf)
		}
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// eofIsTruncation turns the source's end into a corruption error.
func eofIsTruncation(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return corrupt("object ends inside the %s", what)
	}
	return err
}

func (r *Reader) readHeader() error {
	want, err := header(r.keyID)
	if err != nil {
		return err
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r.src, got); err != nil {
		return eofIsTruncation(err, "header")
	}
	if !bytes.Equal(got[:5], want[:5]) {
		return corrupt("not a sealed object of format version %d", Version)
	}
	if !bytes.Equal(got, want) {
		return corrupt("header names another key id than %q", r.keyID)
	}
	return nil
}

// next reads and opens one chunk. It reads one byte past the chunk: if that
// byte exists, the chunk is not the last one.
func (r *Reader) next() error {
	if r.header {
		if err := r.readHeader(); err != nil {
			return err
		}
		r.header = false
	}
	have := 0
	if r.hasLook {
		r.buf[0] = r.look
		have = 1
	}
	n, err := io.ReadFull(r.src, r.buf[have:])
	n += have
	last := false
	switch {
	case err == nil:
		n = int(storedChunk())
		r.look, r.hasLook = r.buf[n], true
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		last = true
	default:
		return err
	}
	if n < Overhead {
		return corrupt("chunk %d is cut short (%d bytes)", r.index, n)
	}
	if last && n == Overhead && r.index > 0 {
		return corrupt("empty final chunk %d", r.index)
	}
	nonce, sealed := r.buf[:nonceSize], r.buf[nonceSize:n]
	pt, err := r.aead.Open(sealed[:0], nonce, sealed, chunkAD(r.ad, r.index, last))
	if err != nil {
		return corrupt("chunk %d does not authenticate", r.index)
	}
	r.index++
	r.lastSeen = last
	if r.skip > 0 {
		if int64(len(pt)) < r.skip {
			return ErrOffsetPastEnd
		}
		pt = pt[r.skip:]
		r.skip = 0
	}
	r.plain = pt
	return nil
}

package stream

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
)

// sealer seals one chunk at a time in place in buf, which has room for a
// stored chunk plus one look-ahead byte: nonce | plaintext (| tag).
type sealer struct {
	aead  cipher.AEAD
	ad    []byte // adPrefix; chunkAD appends index and flag in its spare capacity
	index uint64
	buf   []byte
}

func newSealer(aead cipher.AEAD, keyID string, binding []byte) sealer {
	return sealer{aead: aead, ad: adPrefix(keyID, binding), buf: make([]byte, storedChunk()+1)}
}

// plain is where the next chunk's plaintext goes (with one spare byte).
func (s *sealer) plain() []byte { return s.buf[nonceSize : nonceSize+chunkSize+1] }

// seal seals the first n bytes of plain() and returns the stored chunk.
func (s *sealer) seal(n int, last bool) []byte {
	nonce := s.buf[:nonceSize]
	rand.Read(nonce) // never fails (crypto/rand.Read aborts the program instead)
	pt := s.buf[nonceSize : nonceSize+n]
	ct := s.aead.Seal(pt[:0], nonce, pt, chunkAD(s.ad, s.index, last))
	s.index++
	return s.buf[:nonceSize+len(ct)]
}

func (s *sealer) wipe() { clear(s.buf) }

// Writer seals everything written to it onto dst. Close seals the final
// chunk; without Close the output is incomplete and will not open.
type Writer struct {
	dst    io.Writer
	s      sealer
	n      int // plaintext bytes waiting in s.plain()
	err    error
	closed bool
}

// NewWriter writes the header for keyID to dst and returns a Writer that
// seals with aead (an XChaCha20-Poly1305 AEAD) and binding.
func NewWriter(dst io.Writer, aead cipher.AEAD, keyID string, binding []byte) (*Writer, error) {
	h, err := header(keyID)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(h); err != nil {
		return nil, err
	}
	return &Writer{dst: dst, s: newSealer(aead, keyID, binding)}, nil
}

// Write buffers p and writes out every chunk that is known not to be the
// last one (a full chunk is sealed only once more data follows it).
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("stream: write after Close")
	}
	written := 0
	for len(p) > 0 {
		if w.err != nil {
			return written, w.err
		}
		if int64(w.n) == chunkSize {
			w.flush(false)
			continue
		}
		c := copy(w.s.plain()[w.n:chunkSize], p)
		w.n += c
		written += c
		p = p[c:]
	}
	return written, nil
}

func (w *Writer) flush(last bool) {
	if _, err := w.dst.Write(w.s.seal(w.n, last)); err != nil {
		w.err = err
	}
	w.n = 0
}

// Close seals the final chunk and wipes the buffer. It does not close dst.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		w.flush(true)
	}
	w.s.wipe()
	return w.err
}

// sealingReader is the pull form of Writer: it reads plaintext from src and
// yields the sealed object, for handing to something that wants a reader
// (a BlobStore's Put).
type sealingReader struct {
	src     io.Reader
	s       sealer
	out     []byte // sealed bytes not yet returned
	look    byte   // first byte of the next chunk, read ahead
	hasLook bool
	done    bool
	err     error
}

// NewSealingReader returns a reader of src sealed under keyID with aead and
// binding. An error from src (other than io.EOF) is returned as is and
// nothing after it is sealed, so a store given this reader stores nothing.
func NewSealingReader(src io.Reader, aead cipher.AEAD, keyID string, binding []byte) (io.Reader, error) {
	h, err := header(keyID)
	if err != nil {
		return nil, err
	}
	return &sealingReader{src: src, s: newSealer(aead, keyID, binding), out: h}, nil
}

// Read fills p with as many sealed chunks as fit, so a store copying with
// a large buffer makes few large writes rather than one per chunk.
func (r *sealingReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.out) == 0 {
			if r.err != nil || r.done {
				break
			}
			r.fill()
			continue
		}
		c := copy(p[n:], r.out)
		r.out = r.out[c:]
		n += c
	}
	switch {
	case n > 0:
		return n, nil
	case r.err != nil:
		return 0, r.err
	}
	return 0, io.EOF
}

// fill reads one chunk plus one byte of plaintext: if that extra byte
// exists the chunk is not the last.
func (r *sealingReader) fill() {
	plain := r.s.plain()
	have := 0
	if r.hasLook {
		plain[0] = r.look
		have = 1
	}
	n, err := io.ReadFull(r.src, plain[have:])
	n += have
	switch {
	case err == nil:
		r.look, r.hasLook = plain[chunkSize], true
		r.out = r.s.seal(int(chunkSize), false)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		r.done = true
		r.out = r.s.seal(n, true)
	default:
		r.err = err
		r.s.wipe()
	}
}

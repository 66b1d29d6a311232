package orgs

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"slices"
	"time"
)

// keyFingerprint stands for one wrapped key half that was deleted (or
// replaced by a re-wrap): enough to recognise a copy of it, not enough to
// rebuild it.
//
// A scan slides a window of the half's length over the bytes it searches,
// keeps a Rabin–Karp rolling hash of the window (one multiply and add per
// byte and length) and, where the hash matches, confirms with SHA-256.
//
// What the fingerprint reveals: the length, 64 bits of a linear function
// of the bytes, and a SHA-256. A wrapped half is a KMS ciphertext of 32
// random bytes (plus a random nonce and a tag), so it carries at least 256
// bits of entropy; finding it from the fingerprint means a SHA-256
// preimage search over at least 2^192 candidates. The fingerprint is no
// help in unwrapping anything: that needs the bytes themselves and the KMS.
type keyFingerprint struct {
	OrgID, KeyID string
	Half         string // "customer" or "operator"
	Length       int
	RollingHash  uint64
	SHA256       [sha256.Size]byte
	Shredded     time.Time // when it was deleted
	Purged       time.Time // when the store last erased deleted bytes after that; zero: not yet
}

// Halves of a key record, as named in fingerprints and findings.
const (
	halfCustomer = "customer"
	halfOperator = "operator"
)

// rollingBase is the multiplier of the rolling hash (odd, so every power
// of it is invertible modulo 2^64 and no byte position is lost).
const rollingBase uint64 = 0x100000001b3

// rollingHash is Σ b[i]·B^(n-1-i) mod 2^64: the hash the scan rolls.
func rollingHash(b []byte) uint64 {
	var h uint64
	for _, c := range b {
		h = h*rollingBase + uint64(c)
	}
	return h
}

func fingerprintOf(orgID, keyID, half string, wrapped []byte, at time.Time) keyFingerprint {
	return keyFingerprint{
		OrgID: orgID, KeyID: keyID, Half: half,
		Length:      len(wrapped),
		RollingHash: rollingHash(wrapped),
		SHA256:      sha256.Sum256(wrapped),
		Shredded:    at,
	}
}

// fingerprintScanner finds fingerprinted halves in a stream of bytes.
type fingerprintScanner struct {
	fps     []*keyFingerprint                    // in the order given
	lengths []int                                // distinct lengths, ascending
	byLen   map[int]map[uint64][]*keyFingerprint // length -> rolling hash -> candidates
	topPow  map[int]uint64                       // length L -> B^(L-1)
	maxLen  int
}

func newFingerprintScanner(fps []keyFingerprint) *fingerprintScanner {
	sc := &fingerprintScanner{byLen: map[int]map[uint64][]*keyFingerprint{}, topPow: map[int]uint64{}}
	for i := range fps {
		fp := &fps[i]
		sc.fps = append(sc.fps, fp)
		if fp.Length <= 0 {
			continue
		}
		m := sc.byLen[fp.Length]
		if m == nil {
			m = map[uint64][]*keyFingerprint{}
			sc.byLen[fp.Length] = m
			sc.lengths = append(sc.lengths, fp.Length)
			p := uint64(1)
			for range fp.Length - 1 {
				p *= rollingBase
			}
			sc.topPow[fp.Length] = p
			sc.maxLen = max(sc.maxLen, fp.Length)
		}
		m[fp.RollingHash] = append(m[fp.RollingHash], fp)
	}
	slices.Sort(sc.lengths)
	return sc
}

// all returns every fingerprint the scanner looks for.
func (sc *fingerprintScanner) all() []*keyFingerprint { return sc.fps }

// scanChunkSize is how much of a file is read at a time.
const scanChunkSize = 256 << 10

// scan reads r to its end and calls found for every place where one of
// the fingerprinted halves occurs, with the offset of its first byte. The
// bytes read are zeroed before scan returns: they may hold key material.
func (sc *fingerprintScanner) scan(r io.Reader, found func(fp *keyFingerprint, offset int64)) error {
	if len(sc.lengths) == 0 {
		return nil
	}
	type window struct {
		length int
		hash   uint64
		filled int // bytes hashed so far, up to length
	}
	windows := make([]window, len(sc.lengths))
	for i, l := range sc.lengths {
		windows[i].length = l
	}
	// buf holds the last maxLen bytes of the previous chunks (so windows
	// can drop the bytes leaving them and matches spanning two chunks can
	// be confirmed) followed by the current chunk.
	buf := make([]byte, 0, sc.maxLen+scanChunkSize)
	defer func() { clear(buf[:cap(buf)]) }()
	var bufStart int64 // offset in r of buf[0]
	for {
		keep := min(len(buf), sc.maxLen)
		bufStart += int64(len(buf) - keep)
		copy(buf, buf[len(buf)-keep:])
		buf = buf[:keep]
		n, err := io.ReadFull(r, buf[keep:keep+scanChunkSize])
		buf = buf[:keep+n]
		for i := keep; i < len(buf); i++ {
			in := uint64(buf[i])
			for w := range windows {
				win := &windows[w]
				if win.filled == win.length {
					win.hash -= uint64(buf[i-win.length]) * sc.topPow[win.length]
				} else {
					win.filled++
				}
				win.hash = win.hash*rollingBase + in
				if win.filled < win.length {
					continue
				}
				candidates := sc.byLen[win.length][win.hash]
				if len(candidates) == 0 {
					continue
				}
				start := i + 1 - win.length
				sum := sha256.Sum256(buf[start : i+1])
				for _, fp := range candidates {
					if subtle.ConstantTimeCompare(sum[:], fp.SHA256[:]) == 1 {
						found(fp, bufStart+int64(start))
					}
				}
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return err
		}
	}
}

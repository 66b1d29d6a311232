package disk

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
)

// meta is the record every object has under its 'm' key. It is small (at
// most metaLen bytes), so FindMissing, eviction sampling and access-time
// updates read and rewrite it without touching the object's bytes.
type meta struct {
	size     int64 // bytes of the object
	accessed int64 // last use in Unix nanoseconds, to the touchResolution
	inFile   bool  // bytes live in a file named by file, not in a 'v' record
	file     fileID
}

// Meta record encoding, version 1:
//
//	[0]     metaVersion
//	[1]     location: locationInline or locationFile
//	[2:10]  size, int64 big-endian
//	[10:18] last access, Unix nanoseconds, int64 big-endian
//	[18:34] file id (only for locationFile)
const (
	metaVersion    byte = 1
	locationInline byte = 0
	locationFile   byte = 1
	metaInlineLen       = 18
	metaLen             = metaInlineLen + fileIDLen
)

func (m meta) encode() []byte {
	b := make([]byte, metaInlineLen, metaLen)
	b[0] = metaVersion
	if m.inFile {
		b[1] = locationFile
	}
	binary.BigEndian.PutUint64(b[2:10], uint64(m.size))
	binary.BigEndian.PutUint64(b[10:18], uint64(m.accessed))
	if m.inFile {
		b = append(b, m.file[:]...)
	}
	return b
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) < metaInlineLen || b[0] != metaVersion {
		return meta{}, fmt.Errorf("object record of %d bytes has an unknown format", len(b))
	}
	m := meta{
		size:     int64(binary.BigEndian.Uint64(b[2:10])),
		accessed: int64(binary.BigEndian.Uint64(b[10:18])),
	}
	switch {
	case b[1] == locationInline && len(b) == metaInlineLen:
	case b[1] == locationFile && len(b) == metaLen:
		m.inFile = true
		copy(m.file[:], b[metaInlineLen:])
	default:
		return meta{}, fmt.Errorf("object record of %d bytes has an unknown location %d", len(b), b[1])
	}
	if m.size < 0 {
		return meta{}, fmt.Errorf("object record has a negative size")
	}
	return m, nil
}

// fileID names one large object's file. A fresh id per Put means two Puts of
// one key never write the same file, and an old file can be removed after a
// newer one replaced it without a race on the name.
type fileID [fileIDLen]byte

const fileIDLen = 16

func newFileID() fileID {
	var id fileID
	binary.BigEndian.PutUint64(id[:8], rand.Uint64())
	binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	return id
}

func (id fileID) String() string { return hex.EncodeToString(id[:]) }

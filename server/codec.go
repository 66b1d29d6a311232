package server

import (
	"unicode/utf8"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// serverCodec is gRPC's protobuf codec with download data sent without a
// copy (readChunk, readahead.go) and two messages decoded by hand, because
// they carry most of what clients send:
//
//   - WriteRequest: the standard codec copies a message's bytes twice, into
//     one buffer and then into the data field. Here they are copied once,
//     and data points into that copy: an upload's bytes are copied once
//     less on their way to the store.
//   - FindMissingBlobsRequest: thousands of digests, each its own message
//     and hash string to allocate. Here all digests share one allocation
//     and their hashes one string: 10,000 digests decode in a fraction of
//     the time (BenchmarkDecodeFindMissing).
//
// Anything these decoders do not expect (another field, another wire
// type, a string that is not UTF-8) falls back to the standard codec, so
// every message decodes exactly as the standard codec decodes it; the
// tests check that on random messages.
type serverCodec struct {
	std encoding.CodecV2
}

func newServerCodec() serverCodec {
	return serverCodec{std: encoding.GetCodecV2("proto")}
}

func (c serverCodec) Name() string { return "proto" }

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*readChunk); ok {
		return m.marshal(), nil // readahead.go: the buffer itself, no copy
	}
	return c.std.Marshal(v)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *writeMsg:
		// The one copy, into a pooled buffer that m.Data points into.
		buf := getUploadBuf(data.Len())
		data.CopyTo(*buf)
		m.WriteRequest = &bspb.WriteRequest{}
		if decodeWriteRequest(*buf, m.WriteRequest) {
			m.buf = buf
			return nil
		}
		err := proto.Unmarshal(*buf, m.WriteRequest)
		putUploadBuf(buf) // proto copied what it kept
		return err
	case *repb.FindMissingBlobsRequest:
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		if decodeFindMissing(buf.ReadOnlyData(), m) {
			return nil
		}
		return proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	return c.std.Unmarshal(data, v)
}

// writeMsg is a WriteRequest whose Data lies in a pooled upload buffer:
// what the ByteStream Write handler receives (recvWrite). Whoever ends up
// with the bytes gives the buffer back with release, after which Data must
// not be used; a chunkPipe does that for the data written to it.
type writeMsg struct {
	*bspb.WriteRequest
	buf *[]byte // nil when Data is not pooled
}

// release gives the buffer back; m.Data must not be used after.
func (m *writeMsg) release() {
	if m.buf != nil {
		putUploadBuf(m.buf)
		m.buf = nil
	}
}

// decodeWriteRequest decodes b into m, with m.Data aliasing b, or reports
// false for anything but the four fields of a WriteRequest.
func decodeWriteRequest(b []byte, m *bspb.WriteRequest) bool {
	m.Reset()
	for len(b) > 0 {
		num, typ, v, x, n := consumeField(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return false
			}
			m.ResourceName = string(v)
		case num == 2 && typ == protowire.VarintType:
			m.WriteOffset = int64(x)
		case num == 3 && typ == protowire.VarintType:
			m.FinishWrite = x != 0
		case num == 10 && typ == protowire.BytesType:
			if len(v) == 0 {
				v = nil // as the standard codec leaves an empty field
			}
			m.Data = v[:len(v):len(v)]
		default:
			return false
		}
	}
	return true
}

// decodeFindMissing decodes b into m: digests in one slice of messages,
// hashes cut from one string. It reports false for anything but the fields
// of a FindMissingBlobsRequest and of its digests.
func decodeFindMissing(b []byte, m *repb.FindMissingBlobsRequest) bool {
	m.Reset()
	// First pass: count the digests, so that they share one allocation.
	count := 0
	for rest := b; len(rest) > 0; {
		num, typ, _, _, n := consumeField(rest)
		if n < 0 {
			return false
		}
		rest = rest[n:]
		if num == 2 && typ == protowire.BytesType {
			count++
		}
	}
	digests := make([]repb.Digest, count)
	if count > 0 {
		m.BlobDigests = make([]*repb.Digest, 0, count)
	}
	text := string(b) // every hash is a substring of this one copy
	offset := func(sub []byte) int { return cap(b) - cap(sub) }
	for rest := b; len(rest) > 0; {
		num, typ, v, x, n := consumeField(rest)
		if n < 0 {
			return false
		}
		rest = rest[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return false
			}
			m.InstanceName = string(v)
		case num == 2 && typ == protowire.BytesType:
			d := &digests[len(m.BlobDigests)]
			if !decodeDigest(v, d, func(hash []byte) string {
				return text[offset(hash) : offset(hash)+len(hash)]
			}) {
				return false
			}
			m.BlobDigests = append(m.BlobDigests, d)
		case num == 3 && typ == protowire.VarintType:
			m.DigestFunction = repb.DigestFunction_Value(int32(x))
		default:
			return false
		}
	}
	return true
}

// decodeDigest decodes one Digest message; str turns the hash's bytes
// into a string.
func decodeDigest(b []byte, d *repb.Digest, str func([]byte) string) bool {
	for len(b) > 0 {
		num, typ, v, x, n := consumeField(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return false
			}
			d.Hash = str(v)
		case num == 2 && typ == protowire.VarintType:
			d.SizeBytes = int64(x)
		default:
			return false
		}
	}
	return true
}

// consumeField consumes the first field of b, as the decoders above need
// it: the bytes of a length-delimited field (aliasing b) or the value of a
// varint field. n is how many bytes the field took, or negative when b is
// malformed or the field has another wire type, which the decoders above
// never expect.
func consumeField(b []byte) (num protowire.Number, typ protowire.Type, v []byte, x uint64, n int) {
	num, typ, n = protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, 0, n
	}
	var m int
	switch typ {
	case protowire.BytesType:
		v, m = protowire.ConsumeBytes(b[n:])
	case protowire.VarintType:
		x, m = protowire.ConsumeVarint(b[n:])
	default:
		return 0, 0, nil, 0, -1
	}
	if m < 0 {
		return 0, 0, nil, 0, m
	}
	return num, typ, v, x, n + m
}

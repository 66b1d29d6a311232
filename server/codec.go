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
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !utf8.Valid(v) {
				return false
			}
			m.ResourceName, b = string(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			m.WriteOffset, b = int64(v), b[n:]
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			m.FinishWrite, b = v != 0, b[n:]
		case num == 10 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			if len(v) == 0 {
				v = nil // as the standard codec leaves an empty field
			}
			m.Data, b = v[:len(v):len(v)], b[n:]
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
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return false
		}
		rest = rest[n:]
		if n = protowire.ConsumeFieldValue(num, typ, rest); n < 0 {
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
		num, typ, n := protowire.ConsumeTag(rest)
		rest = rest[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(rest)
			if n < 0 || !utf8.Valid(v) {
				return false
			}
			m.InstanceName, rest = string(v), rest[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(rest)
			if n < 0 {
				return false
			}
			d := &digests[len(m.BlobDigests)]
			if !decodeDigest(v, d, func(hash []byte) string {
				return text[offset(hash) : offset(hash)+len(hash)]
			}) {
				return false
			}
			m.BlobDigests, rest = append(m.BlobDigests, d), rest[n:]
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(rest)
			if n < 0 {
				return false
			}
			m.DigestFunction, rest = repb.DigestFunction_Value(int32(v)), rest[n:]
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
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !utf8.Valid(v) {
				return false
			}
			d.Hash, b = str(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			d.SizeBytes, b = int64(v), b[n:]
		default:
			return false
		}
	}
	return true
}

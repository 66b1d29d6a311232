package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The server codec decodes every message as the standard codec does:
// equal messages for valid input (also with fields the fast decoders do not
// know, which send them to the standard codec), an error for invalid input.
func TestServerCodecDecodesLikeTheStandardCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		for _, msg := range []proto.Message{randomWriteRequest(r), randomFindMissing(r)} {
			wire, err := proto.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			switch i % 4 {
			case 1: // a field the fast decoders do not expect
				wire = protowire.AppendVarint(protowire.AppendTag(wire, 99, protowire.VarintType), 7)
			case 2: // damage: truncated, or a byte changed
				if len(wire) > 0 {
					if r.IntN(2) == 0 {
						wire = wire[:r.IntN(len(wire))]
					} else {
						wire[r.IntN(len(wire))] ^= byte(1 + r.IntN(255))
					}
				}
			}
			checkDecodesLikeStandard(t, wire, msg)
		}
	}
}

func checkDecodesLikeStandard(t *testing.T, wire []byte, like proto.Message) {
	t.Helper()
	want, got := like.ProtoReflect().New().Interface(), like.ProtoReflect().New().Interface()
	wantErr := proto.Unmarshal(wire, want)
	// Split the bytes into several buffers, as gRPC hands them over.
	var data mem.BufferSlice
	for rest := wire; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)/3)
		data = append(data, mem.SliceBuffer(rest[:n]))
		rest = rest[n:]
	}
	var gotErr error
	if _, ok := like.(*bspb.WriteRequest); ok {
		// As the Write handler receives it: data in a pooled buffer.
		m := &writeMsg{}
		gotErr = newServerCodec().Unmarshal(data, m)
		got = m.WriteRequest
		defer m.release()
	} else {
		gotErr = newServerCodec().Unmarshal(data, got)
	}
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%T %x: standard codec error %v, server codec error %v", like, wire, wantErr, gotErr)
	}
	if wantErr == nil && !proto.Equal(want, got) {
		t.Fatalf("%T %x: decoded\n%v\nwant\n%v", like, wire, got, want)
	}
}

func randomWriteRequest(r *rand.Rand) *bspb.WriteRequest {
	m := &bspb.WriteRequest{WriteOffset: r.Int64N(1 << 40), FinishWrite: r.IntN(2) == 0}
	if r.IntN(3) > 0 {
		m.ResourceName = fmt.Sprintf("uploads/%d/blobs/%x/%d", r.Int(), r.Uint64(), r.IntN(1000))
	}
	if r.IntN(4) > 0 {
		m.Data = make([]byte, r.IntN(3000))
		for i := range m.Data {
			m.Data[i] = byte(r.Uint32())
		}
	}
	return m
}

func randomFindMissing(r *rand.Rand) *repb.FindMissingBlobsRequest {
	m := &repb.FindMissingBlobsRequest{DigestFunction: repb.DigestFunction_Value(r.IntN(10))}
	if r.IntN(2) == 0 {
		m.InstanceName = "linux-x86"
	}
	for range r.IntN(50) {
		m.BlobDigests = append(m.BlobDigests, &repb.Digest{Hash: fmt.Sprintf("%064x", r.Uint64()), SizeBytes: r.Int64N(1 << 30)})
	}
	return m
}

func FuzzServerCodec(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		w, _ := proto.Marshal(randomWriteRequest(r))
		f.Add(w, false)
		fm, _ := proto.Marshal(randomFindMissing(r))
		f.Add(fm, true)
	}
	f.Fuzz(func(t *testing.T, wire []byte, findMissing bool) {
		if findMissing {
			checkDecodesLikeStandard(t, wire, &repb.FindMissingBlobsRequest{})
		} else {
			checkDecodesLikeStandard(t, wire, &bspb.WriteRequest{})
		}
	})
}

// BenchmarkDecodeFindMissing decodes a request of 10,000 digests with the
// standard codec and with the server's.
func BenchmarkDecodeFindMissing(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	m := &repb.FindMissingBlobsRequest{}
	for range 10_000 {
		m.BlobDigests = append(m.BlobDigests, &repb.Digest{Hash: fmt.Sprintf("%016x%016x%016x%016x", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()), SizeBytes: r.Int64N(1 << 20)})
	}
	wire, _ := proto.Marshal(m)
	data := mem.BufferSlice{mem.SliceBuffer(wire)}
	for name, c := range map[string]interface {
		Unmarshal(mem.BufferSlice, any) error
	}{"standard": newServerCodec().std, "server": newServerCodec()} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := c.Unmarshal(data, &repb.FindMissingBlobsRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A readChunk goes out as a ReadResponse holding the buffer's bytes, and
// the buffer itself is what is sent (no copy), until gRPC frees it.
func TestReadChunkIsAReadResponse(t *testing.T) {
	for _, n := range []int{0, 1, readChunkSize} {
		buf := readBufs.Get(n)
		for i := range *buf {
			(*buf)[i] = byte(i * 13)
		}
		want := append([]byte(nil), *buf...)
		data, err := newServerCodec().Marshal(&readChunk{buf})
		if err != nil {
			t.Fatal(err)
		}
		var got bspb.ReadResponse
		if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Data, want) {
			t.Fatalf("%d bytes: decoded %d bytes that differ", n, len(got.Data))
		}
		if n > 0 && &data[len(data)-1].ReadOnlyData()[0] != &(*buf)[0] {
			t.Fatalf("%d bytes: the buffer was copied", n)
		}
		data.Free()
	}
}

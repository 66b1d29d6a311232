package server

import (
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Request limits. Each bounds what one request can make the server hold;
// the gRPC message limit follows from them. README ("Limits") lists them.
const (
	// maxBatchTotalSize is the most blob bytes (uncompressed, as the
	// digests declare them) one BatchUpdateBlobs or BatchReadBlobs may
	// carry; Capabilities advertises it as max_batch_total_size_bytes.
	maxBatchTotalSize = 4 << 20
	// maxBatchBlobs is the most entries in one BatchUpdateBlobs or
	// BatchReadBlobs: with maxBatchStatusMessage it bounds the bytes a
	// batch response adds to its blobs.
	maxBatchBlobs = 10_000
	// maxBatchStatusMessage bounds the message of one entry's status in a
	// batch response; longer ones are cut.
	maxBatchStatusMessage = 512
	// maxFindMissingDigests is the most digests one FindMissingBlobs may
	// ask about. Bazel splits its calls to fit its own message size limit;
	// other clients send all of an action's inputs in one call.
	maxFindMissingDigests = 100_000

	// clientDefaultReceiveLimit is what gRPC clients accept per message
	// unless told otherwise (grpc-go and grpc-java both use 4 MiB). Pages
	// of GetTree stay below it, so every client can read them.
	clientDefaultReceiveLimit = 4 << 20
	// maxTreePageBytes bounds the directories of one GetTree page; the rest
	// of the limit is left for the response's framing and page token.
	maxTreePageBytes = clientDefaultReceiveLimit - 16<<10
	// maxDirectorySize bounds a Directory message read for GetTree: one
	// that does not fit a page could never be sent.
	maxDirectorySize = maxTreePageBytes
)

// maxDigestEntrySize is the most bytes one digest takes as an element of a
// repeated Digest field: a SHA-512 hash and the largest size.
var maxDigestEntrySize = protowire.SizeTag(1) +
	protowire.SizeBytes(proto.Size(&repb.Digest{Hash: strings.Repeat("f", 128), SizeBytes: math.MaxInt64}))

// maxBatchEntryOverhead is the most bytes one entry of a batch response
// (the larger of BatchReadBlobsResponse and BatchUpdateBlobsResponse
// entries) adds to its blob data: digest, status, compressor, framing.
var maxBatchEntryOverhead = func() int {
	status := proto.Size(statusProto(math.MaxInt32, "%s", strings.Repeat("x", maxBatchStatusMessage)))
	inner := maxDigestEntrySize +
		protowire.SizeTag(2) + protowire.SizeVarint(maxBatchTotalSize) + // data's field header
		protowire.SizeTag(3) + protowire.SizeBytes(status) +
		protowire.SizeTag(4) + protowire.SizeVarint(math.MaxInt32) // compressor
	return protowire.SizeTag(1) + protowire.SizeVarint(uint64(inner+maxBatchTotalSize)) + inner
}()

// maxGRPCMessage is the gRPC message limit, both ways: the largest message
// the limits above allow, plus 64 KiB for instance names, page tokens and
// such. The largest is a FindMissingBlobs of maxFindMissingDigests SHA-512
// digests, about 14 MB; a full batch response is about 11 MB.
var maxGRPCMessage = max(
	maxFindMissingDigests*maxDigestEntrySize,              // FindMissingBlobs request and response
	maxBatchTotalSize+maxBatchBlobs*maxBatchEntryOverhead, // BatchUpdateBlobs request, BatchReadBlobs response
	clientDefaultReceiveLimit,                             // a GetTree page
) + 64<<10

// limitListener caps the open connections of one listening port. At the
// cap it stops accepting: new clients wait in the kernel's accept queue
// until a connection closes, rather than being refused, and the server logs
// that the cap was reached (at most once a minute).
type limitListener struct {
	net.Listener
	port   string // "grpc" or "http", for the log
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
	log    *slog.Logger

	mu         sync.Mutex
	lastLogged time.Time
}

func newLimitListener(l net.Listener, port string, maxConns int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: l, port: port, slots: make(chan struct{}, maxConns), closed: make(chan struct{}), log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		l.logFull()
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
}

func (l *limitListener) logFull() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.lastLogged) >= time.Minute {
		l.lastLogged = now
		l.log.Warn("connection limit reached: new connections wait until an open one closes; raise --max_connections_per_port if clients are slow to connect",
			"port", l.port, "address", l.Addr().String(), "open_connections", cap(l.slots))
	}
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitedConn gives its slot back when closed (once, however often Close is called).
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

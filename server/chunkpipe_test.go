package server

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// A chunk pipe delivers every written byte in order, whatever the sizes
// of writes and reads, then the writer's end.
func TestChunkPipeDeliversWritesInOrder(t *testing.T) {
	p := newChunkPipe(10)
	want := bytes.Repeat([]byte("0123456789abcdef"), 100)
	done := make(chan error, 1)
	go func() {
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+len(rest)%23)
			if _, err := p.Write(rest[:n]); err != nil {
				done <- err
				return
			}
			rest = rest[n:]
		}
		done <- p.Close()
	}()
	got, err := io.ReadAll(iotest.HalfReader(p))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(want))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Write returns before the reader has read, until limit bytes wait: the
// writer is not held in lock step with the reader.
func TestChunkPipeQueuesUpToItsLimit(t *testing.T) {
	p := newChunkPipe(8)
	for _, w := range []string{"abc", "defgh"} {
		if _, err := p.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan struct{})
	go func() {
		p.Write([]byte("ij")) // 8 bytes wait: blocks until some are read
		close(blocked)
	}()
	buf := make([]byte, 4)
	if n, err := p.Read(buf); n != 4 || err != nil || string(buf) != "abcd" {
		t.Fatalf("Read = %d %q, %v", n, buf[:n], err)
	}
	<-blocked
	p.Close()
	rest, err := io.ReadAll(p)
	if err != nil || string(rest) != "efghij" {
		t.Fatalf("rest = %q, %v", rest, err)
	}
}

// The writer's error reaches the reader after the queued bytes; the
// reader's close fails the writer, also one blocked on a full queue.
func TestChunkPipeErrors(t *testing.T) {
	boom := errors.New("boom")
	p := newChunkPipe(100)
	p.Write([]byte("data"))
	p.CloseWithError(boom)
	if got, err := io.ReadAll(p); string(got) != "data" || !errors.Is(err, boom) {
		t.Fatalf("ReadAll = %q, %v; want the data, then boom", got, err)
	}
	if _, err := p.Write([]byte("x")); err == nil {
		t.Fatal("Write after the writer closed succeeded")
	}

	p = newChunkPipe(1)
	p.Write([]byte("full"))
	failed := make(chan error)
	go func() {
		_, err := p.Write([]byte("more"))
		failed <- err
	}()
	p.CloseRead(boom)
	if err := <-failed; !errors.Is(err, boom) {
		t.Fatalf("blocked Write = %v, want boom", err)
	}
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("Read after CloseRead = %v, want boom", err)
	}
}

// copyingWriter hands over a copy: the writer may reuse its buffer.
func TestCopyingWriterLetsTheWriterReuseItsBuffer(t *testing.T) {
	p := newChunkPipe(100)
	buf := []byte("first")
	copyingWriter{p}.Write(buf)
	copy(buf, "XXXXX")
	p.Close()
	if got, _ := io.ReadAll(p); string(got) != "first" {
		t.Fatalf("read %q, want the bytes as written", got)
	}
}

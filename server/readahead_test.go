package server

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// readAhead hands out the source's bytes in order, then its end.
func TestReadAheadHandsOutTheSourceInOrder(t *testing.T) {
	want := make([]byte, 3*readChunkSize+123)
	for i := range want {
		want[i] = byte(i * 7)
	}
	ra := startReadAhead(iotest.HalfReader(bytes.NewReader(want)))
	defer ra.close()
	var got []byte
	for {
		p, err := ra.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, *p...)
		readBufs.Put(p)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d in order", len(got), len(want))
	}
	if _, err := ra.next(); err != io.EOF {
		t.Fatalf("next after the end = %v, want io.EOF again", err)
	}
}

// A source error comes after the bytes read before it.
func TestReadAheadPassesTheSourceErrorOn(t *testing.T) {
	boom := errors.New("boom")
	ra := startReadAhead(io.MultiReader(bytes.NewReader([]byte("some bytes")), iotest.ErrReader(boom)))
	defer ra.close()
	p, err := ra.next()
	if err != nil || string(*p) != "some bytes" {
		t.Fatalf("next = %v, %v", p, err)
	}
	if _, err := ra.next(); !errors.Is(err, boom) {
		t.Fatalf("next = %v, want boom", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

// A caller that stops early (the client went away) stops the reader
// goroutine with close, which returns once it has.
func TestReadAheadCloseStopsAnUnfinishedRead(t *testing.T) {
	ra := startReadAhead(endless{})
	if _, err := ra.next(); err != nil {
		t.Fatal(err)
	}
	ra.close() // returns: the goroutine ended; the test would hang otherwise
}

package orgs

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"
	"testing/iotest"
	"time"
)

// TestFingerprintScanFindsEveryCopyAndNothingElse: copies at the start, at
// the end and across the boundary between two reads are found at their
// exact offsets; a copy with one byte changed is not.
func TestFingerprintScanFindsEveryCopyAndNothingElse(t *testing.T) {
	short, long := randomBytes(72), randomBytes(300)
	fps := []keyFingerprint{
		fingerprintOf("o1", "k1", halfCustomer, short, time.Now()),
		fingerprintOf("o1", "k1", halfOperator, long, time.Now()),
	}
	data := randomBytes(3*scanChunkSize + 123)
	place := func(half []byte, at int) { copy(data[at:], half) }
	place(short, 0)
	place(long, scanChunkSize-100) // spans the first and second read
	place(short, 2*scanChunkSize-1)
	place(long, len(data)-len(long))
	nearMiss := slices.Clone(short)
	nearMiss[71] ^= 1
	place(nearMiss, 1000)

	want := []string{
		fmt.Sprintf("customer@%d", 0),
		fmt.Sprintf("operator@%d", scanChunkSize-100),
		fmt.Sprintf("customer@%d", 2*scanChunkSize-1),
		fmt.Sprintf("operator@%d", len(data)-len(long)),
	}
	slices.Sort(want)
	for name, r := range map[string]io.Reader{
		"whole reads":        bytes.NewReader(data),
		"one byte at a time": iotest.OneByteReader(bytes.NewReader(data)),
	} {
		var got []string
		err := newFingerprintScanner(fps).scan(r, func(fp *keyFingerprint, offset int64) {
			got = append(got, fmt.Sprintf("%s@%d", fp.Half, offset))
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: found %v, want %v", name, got, want)
		}
	}
}

func TestFingerprintScanOfNothing(t *testing.T) {
	calls := 0
	err := newFingerprintScanner(nil).scan(bytes.NewReader(randomBytes(1000)), func(*keyFingerprint, int64) { calls++ })
	if err != nil || calls != 0 {
		t.Fatalf("scan without fingerprints: %d finds, %v", calls, err)
	}
	fps := []keyFingerprint{fingerprintOf("o1", "k1", halfCustomer, randomBytes(72), time.Now())}
	err = newFingerprintScanner(fps).scan(bytes.NewReader(randomBytes(10)), func(*keyFingerprint, int64) { calls++ })
	if err != nil || calls != 0 {
		t.Fatalf("scan of fewer bytes than a half: %d finds, %v", calls, err)
	}
}

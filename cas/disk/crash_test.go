package disk

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

// The crash test runs the store in a child process (this test binary again,
// told so by crashChildEnv), kills it with SIGKILL while 64 Puts are in
// flight, and checks what a new Open finds.
const (
	crashChildEnv  = "SEALCACHE_DISK_CRASH_CHILD_DIR"
	crashWorkers   = 64
	crashAcksFirst = 400 // Puts acknowledged before the kill
	crashInlineMax = 16 << 10
)

// crashSizes cross the inline threshold and the copy buffer.
var crashSizes = []int64{0, 100, crashInlineMax - 1, crashInlineMax, crashInlineMax + 1, 100 << 10, 1 << 20, 3<<20 + 5}

// crashObject is the deterministic object number i.
func crashObject(i int) (cas.Key, []byte) {
	data := castest.Bytes(uint64(i), crashSizes[i%len(crashSizes)])
	return castest.CASKey(cas.Partition(fmt.Sprintf("org%d", i%3)), data), data
}

func crashOptions() Options {
	return Options{MaxSize: 64 << 30, InlineMaxSize: crashInlineMax}
}

// TestCrashKeepsAcknowledgedObjectsWhole: after a SIGKILL in the middle of
// 64 concurrent Puts, every object a Put acknowledged is there, and every
// object FindMissing reports present reads back whole and right: none is
// partial or corrupt.
func TestCrashKeepsAcknowledgedObjectsWhole(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedObjectsWhole$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[int]bool{}
	maxStarted := 0
	lines := bufio.NewScanner(out)
	for lines.Scan() && len(acked) < crashAcksFirst {
		verb, num, _ := strings.Cut(lines.Text(), " ")
		i, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		switch verb {
		case "stored":
			acked[i] = true
		case "start":
			maxStarted = max(maxStarted, i)
		}
	}
	if len(acked) < crashAcksFirst {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child stopped after %d acknowledged Puts: %v", len(acked), lines.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Acknowledgements already in the pipe were printed before the kill.
	for lines.Scan() {
		verb, num, _ := strings.Cut(lines.Text(), " ")
		if i, err := strconv.Atoi(num); err == nil {
			if verb == "stored" {
				acked[i] = true
			}
			maxStarted = max(maxStarted, i)
		}
	}
	cmd.Wait()

	s := openStore(t, dir, crashOptions())
	ctx := context.Background()
	present, broken, lost := 0, 0, 0
	for i := 0; i <= maxStarted; i++ {
		k, want := crashObject(i)
		missing, err := s.FindMissing(ctx, []cas.Key{k})
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 1 {
			if acked[i] {
				lost++
				t.Errorf("object %d (%d bytes) was acknowledged but is missing after the crash", i, len(want))
			}
			continue
		}
		present++
		rc, size, err := s.Get(ctx, k, 0)
		if err != nil {
			t.Errorf("object %d is reported present but Get fails: %v", i, err)
			broken++
			continue
		}
		var got bytes.Buffer
		_, err = got.ReadFrom(rc)
		rc.Close()
		if err != nil || size != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
			broken++
			t.Errorf("object %d: read %d bytes (reported %d, error %v); want its %d bytes", i, got.Len(), size, err, len(want))
		}
	}
	// The crash left files of Puts in flight; the sweep after an unclean
	// shutdown removes them.
	s.removeOrphanFiles()
	var inFiles int64
	for _, p := range []cas.Partition{"org0", "org1", "org2"} {
		s.WalkPartition(ctx, p, func(o cas.StoredObject) error {
			if o.Size > crashInlineMax {
				inFiles++
			}
			return nil
		})
	}
	files := countFiles(s.largeDir)
	t.Logf("%d Puts started, %d acknowledged before the kill, %d objects present after it: %d partial or corrupt, %d acknowledged but lost; %d object files for %d large objects",
		maxStarted+1, len(acked), present, broken, lost, files, inFiles)
	if int64(files) != inFiles {
		t.Errorf("%d object files remain for %d large objects", files, inFiles)
	}
}

// runCrashChild stores objects from crashWorkers goroutines until it is
// killed, printing "start N" before and "stored N" after each Put.
func runCrashChild(dir string) {
	s, err := Open(dir, crashOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(verb string, i int) {
		mu.Lock()
		fmt.Printf("%s %d\n", verb, i)
		mu.Unlock()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range crashWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				k, data := crashObject(i)
				say("start", i)
				if err := s.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				say("stored", i)
			}
		})
	}
	wg.Wait() // never: the parent kills the process
}

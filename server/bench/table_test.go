package bench

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestMedianAndSpread(t *testing.T) {
	for _, tc := range []struct {
		in          []float64
		med, lo, hi float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{7}, 7, 7, 7},
	} {
		med, lo, hi := median(tc.in)
		if med != tc.med || lo != tc.lo || hi != tc.hi {
			t.Errorf("median(%v) = %v, %v, %v; want %v, %v, %v", tc.in, med, lo, hi, tc.med, tc.lo, tc.hi)
		}
	}
	if med, _, _ := median(nil); !math.IsNaN(med) {
		t.Error("median of no samples is a number")
	}
}

// The table holds each figure's median and spread per org, says whether
// it meets its goal, and relates relative goals to the baseline.
func TestTableJudgesEachFigureAgainstItsGoal(t *testing.T) {
	results := map[string]Samples{
		"plain": {"large.up": {500, 460, 480}, "findmissing.idle.p50": {12}, "mixed.write.ops": {1300}},
		"cmek":  {"large.up": {390, 380, 395}, "findmissing.idle.p50": {8}, "mixed.write.ops": {990}},
	}
	baseline := Samples{"mixed.write.ops": {1000}}
	var b strings.Builder
	Table(&b, results, baseline)
	out := b.String()
	for _, want := range []string{
		"| 2 1 GiB ByteStream | upload (MB/s) | >= 450 (CMEK >= 400) | - | 480 (460–500) ok | 390 (380–395) MISSED |",
		"| 3 FindMissing 10k | idle p50 (ms) | < 10 | - | 12.0 MISSED | 8.0 ok |",
		"1,300 = 1.30x old ok",
		"990 = 0.99x old MISSED",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "zstd") {
		t.Errorf("the table shows rows that were not measured:\n%s", out)
	}
}

func TestProcRSSReadsAProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc here")
	}
	rss, err := ProcRSS(os.Getpid())()
	if err != nil || rss <= 0 {
		t.Fatalf("ProcRSS = %d, %v", rss, err)
	}
}

package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// row is one line of the table: a figure, the target it answers, and the
// goal it is held against.
type row struct {
	target string // issue 12's target number and subject
	figure string // what is measured, with its unit
	key    string // Samples name
	goal   string // as printed
	// check says whether the org's median v meets the goal; base is the
	// baseline's median (NaN without one). known is false when the goal
	// cannot be judged (a relative goal without a baseline).
	check func(org string, v, base float64) (ok, known bool)
	// decimals to print
	decimals int
}

func atLeast(plain, cmek float64) func(string, float64, float64) (bool, bool) {
	return func(org string, v, _ float64) (bool, bool) {
		if org == "cmek" {
			return v >= cmek, true
		}
		return v >= plain, true
	}
}

func below(limit float64) func(string, float64, float64) (bool, bool) {
	return func(_ string, v, _ float64) (bool, bool) { return v < limit, true }
}

// relToBase: plain must reach plainX times the baseline, CMEK cmekX times.
func relToBase(plainX, cmekX float64) func(string, float64, float64) (bool, bool) {
	return func(org string, v, base float64) (bool, bool) {
		if math.IsNaN(base) || base == 0 {
			return false, false
		}
		if org == "cmek" {
			return v >= cmekX*base, true
		}
		return v >= plainX*base, true
	}
}

// plainRelToBase holds only the plain org to a multiple of the baseline
// (the old server measured a plain org).
func plainRelToBase(x float64) func(string, float64, float64) (bool, bool) {
	return func(org string, v, base float64) (bool, bool) {
		if org == "cmek" {
			return false, false
		}
		return relToBase(x, x)(org, v, base)
	}
}

func info(string, float64, float64) (bool, bool) { return false, false }

var rows = []row{
	{"1 mixed load", "writes, 32 clients (ops/s)", "mixed.write.ops", ">= 1.25x old (CMEK >= 1x old)", relToBase(1.25, 1), 0},
	{"1 mixed load", "writes (MB/s)", "mixed.write.mbps", "", info, 0},
	{"1 mixed load", "write p99 (ms)", "mixed.write.p99", "", info, 1},
	{"1 mixed load", "reads, 32 clients (ops/s)", "mixed.read.ops", ">= 1.25x old (CMEK >= 1x old)", relToBase(1.25, 1), 0},
	{"1 mixed load", "reads (MB/s)", "mixed.read.mbps", "", info, 0},
	{"1 mixed load", "read p99 (ms)", "mixed.read.p99", "", info, 1},
	{"2 1 GiB ByteStream", "upload (MB/s)", "large.up", ">= 450 (CMEK >= 400)", atLeast(450, 400), 0},
	{"2 1 GiB ByteStream", "download, client hashes (MB/s)", "large.down", ">= 700", atLeast(700, 700), 0},
	{"2 1 GiB ByteStream", "server peak RSS (MB)", "large.rss", "< 100", below(100), 0},
	{"3 FindMissing 10k", "idle p50 (ms)", "findmissing.idle.p50", "< 10", below(10), 1},
	{"3 FindMissing 10k", "idle p99 (ms)", "findmissing.idle.p99", "", info, 1},
	{"3 FindMissing 10k", "under 32 clients p50 (ms)", "findmissing.load.p50", "< 50", below(50), 1},
	{"3 FindMissing 10k", "under 32 clients p99 (ms)", "findmissing.load.p99", "", info, 1},
	{"4 zstd", "zstd alone, 1 goroutine: encode / decode (MB/s)", "zstd.encode", "", info, 0},
	{"4 zstd", "ByteStream write, zstd (MB/s of blob)", "zstd.stream.write", "", info, 0},
	{"4 zstd", "  same, uncompressed", "zstd.stream.write.plain", "", info, 0},
	{"4 zstd", "  / zstd decode alone", "zstd.stream.write.rel", ">= 0.8", atLeast(0.8, 0.8), 2},
	{"4 zstd", "  / min(decode alone, uncompressed)", "zstd.stream.write.bound", ">= 0.8", atLeast(0.8, 0.8), 2},
	{"4 zstd", "ByteStream read, zstd (MB/s of blob)", "zstd.stream.read", "", info, 0},
	{"4 zstd", "  same, uncompressed", "zstd.stream.read.plain", "", info, 0},
	{"4 zstd", "  / zstd encode alone", "zstd.stream.read.rel", ">= 0.8", atLeast(0.8, 0.8), 2},
	{"4 zstd", "batch write, zstd entries (MB/s of blobs)", "zstd.batch.write", "", info, 0},
	{"4 zstd", "  same, uncompressed", "zstd.batch.write.plain", "", info, 0},
	{"4 zstd", "  / zstd decode alone", "zstd.batch.write.rel", ">= 0.8", atLeast(0.8, 0.8), 2},
	{"4 zstd", "  / min(decode alone, uncompressed)", "zstd.batch.write.bound", ">= 0.8", atLeast(0.8, 0.8), 2},
	{"4 zstd", "batch read, zstd entries (MB/s of blobs)", "zstd.batch.read", "", info, 0},
	{"4 zstd", "  same, uncompressed", "zstd.batch.read.plain", "", info, 0},
	{"4 zstd", "  / zstd encode alone", "zstd.batch.read.rel", ">= 0.8", atLeast(0.8, 0.8), 2},
	{"5 batch RPCs", "BatchUpdateBlobs, 100 blobs a call (blobs/s)", "batch.update.ops", ">= 1x old (plain)", plainRelToBase(1), 0},
	{"5 batch RPCs", "BatchReadBlobs, 100 blobs a call (blobs/s)", "batch.read.ops", ">= 1x old (plain)", plainRelToBase(1), 0},
}

// median returns the median of v and its smallest and largest value.
func median(v []float64) (med, lo, hi float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

func formatNum(v float64, decimals int) string {
	s := fmt.Sprintf("%.*f", decimals, v)
	// Thousands separators for the integer part.
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// cell prints an org's figure: median, spread over runs, and whether it
// meets the goal.
func cell(r row, org string, s Samples, baseMed float64, extra string) string {
	med, lo, hi := median(s[r.key])
	if math.IsNaN(med) {
		return "-"
	}
	out := formatNum(med, r.decimals)
	if len(s[r.key]) > 1 {
		out += " (" + formatNum(lo, r.decimals) + "–" + formatNum(hi, r.decimals) + ")"
	}
	if extra != "" {
		out += " " + extra
	}
	if !math.IsNaN(baseMed) && baseMed > 0 && strings.HasPrefix(r.goal, ">") && strings.Contains(r.goal, "old") {
		out += fmt.Sprintf(" = %.2fx old", med/baseMed)
	}
	if ok, known := r.check(org, med, baseMed); known {
		if ok {
			out += " ok"
		} else {
			out += " MISSED"
		}
	}
	return out
}

// Table prints results as a Markdown table: one row per figure, a column
// per org, and the baseline (an older server, from --baseline) when given.
// Cells are "median (min–max)" over the runs, followed by "ok" or "MISSED"
// where the row has a goal.
func Table(w io.Writer, results map[string]Samples, baseline Samples) {
	orgs := []string{}
	for _, o := range []string{"plain", "cmek"} {
		if _, ok := results[o]; ok {
			orgs = append(orgs, o)
		}
	}
	header := []string{"target", "figure", "goal"}
	if baseline != nil {
		header = append(header, "old (plain)")
	}
	for _, o := range orgs {
		header = append(header, map[string]string{"plain": "plain org", "cmek": "CMEK org"}[o])
	}
	fmt.Fprintln(w, "| "+strings.Join(header, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat(" --- |", len(header)))
	for _, r := range rows {
		present := false
		for _, o := range orgs {
			present = present || len(results[o][r.key]) > 0
		}
		if !present {
			continue
		}
		cols := []string{r.target, r.figure, r.goal}
		baseMed := math.NaN()
		if baseline != nil {
			baseMed, _, _ = median(baseline[r.key])
			cols = append(cols, cell(row{key: r.key, decimals: r.decimals, check: info}, "plain", baseline, math.NaN(), ""))
		}
		for _, o := range orgs {
			extra := ""
			if r.key == "zstd.encode" {
				d, _, _ := median(results[o]["zstd.decode"])
				extra = "/ " + formatNum(d, 0)
			}
			cols = append(cols, cell(r, o, results[o], baseMed, extra))
		}
		fmt.Fprintln(w, "| "+strings.Join(cols, " | ")+" |")
	}
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	bspb "google.golang.org/genproto/googleapis/bytestream"
)

// Options configure a Suite run: every measurement's options, which of
// them to run, and how many times.
type Options struct {
	Mixed       MixedOptions
	Large       LargeOptions
	FindMissing FindMissingOptions
	Zstd        ZstdOptions
	Batch       BatchOptions
	// Only names the measurements to run (mixed, large, findmissing, zstd,
	// batch); empty runs them all.
	Only []string
	// Runs is how many times each measurement is taken; the table shows
	// the median and the spread.
	Runs int
	// Sync writes this machine's dirty pages to disk (sync(2)) before each
	// run, so that the writeback of earlier runs does not compete with it:
	// back-to-back 1 GiB uploads otherwise measure the disk's sustained
	// rate (about 250 MB/s here) rather than the server, and whichever
	// server or org runs later pays for the ones before. Only useful with
	// the server on this machine.
	Sync bool
	// Progress, if set, gets one line per finished measurement.
	Progress io.Writer
}

// DefaultOptions are issue 12's workloads, three runs each.
func DefaultOptions() Options {
	return Options{
		Mixed: DefaultMixed(), Large: DefaultLarge(), FindMissing: DefaultFindMissing(),
		Zstd: DefaultZstd(), Batch: DefaultBatch(), Runs: 3, Sync: true,
	}
}

// Measurements in the order they run.
var Measurements = []string{"large", "mixed", "findmissing", "zstd", "batch"}

// Samples holds every figure of one org's runs: figure name to one value
// per run. Names are the keys of the table rows (table.go).
type Samples map[string][]float64

func (s Samples) add(name string, v float64) { s[name] = append(s[name], v) }

// Target is a server under test with one API key: Dial opens connections
// that carry it.
type Target struct {
	Name string // "plain" or "cmek"
	Dial Dialer
}

// Run takes o.Runs runs of each selected measurement against every target,
// interleaved (run 1 of every target, then run 2, ...), so that a slow
// moment of a shared machine does not fall on one target only.
func Run(ctx context.Context, targets []Target, o Options) (map[string]Samples, error) {
	out := map[string]Samples{}
	for _, t := range targets {
		out[t.Name] = Samples{}
	}
	selected := Measurements
	if len(o.Only) > 0 {
		selected = o.Only
	}
	for _, m := range selected {
		if !slices.Contains(Measurements, m) {
			return nil, fmt.Errorf("unknown measurement %q; choose from %s", m, strings.Join(Measurements, ", "))
		}
	}
	seed := uint64(time.Now().UnixNano())
	for _, m := range Measurements {
		if !slices.Contains(selected, m) {
			continue
		}
		for run := range max(o.Runs, 1) {
			for _, t := range targets {
				seed++
				if o.Sync {
					syncDisks()
				}
				if err := measure(ctx, m, t, seed, o, out[t.Name]); err != nil {
					return out, fmt.Errorf("%s, %s org, run %d: %w", m, t.Name, run+1, err)
				}
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "%s %s run %d done\n", m, t.Name, run+1)
				}
			}
		}
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func measure(ctx context.Context, m string, t Target, seed uint64, o Options, s Samples) error {
	switch m {
	case "mixed":
		mo := o.Mixed
		mo.Seed = seed
		r, err := Mixed(ctx, t.Dial, mo)
		if err != nil {
			return err
		}
		s.add("mixed.write.ops", r.Write.OpsPerSec())
		s.add("mixed.write.mbps", r.Write.MBPerSec())
		s.add("mixed.write.p99", ms(r.Write.P99))
		s.add("mixed.read.ops", r.Read.OpsPerSec())
		s.add("mixed.read.mbps", r.Read.MBPerSec())
		s.add("mixed.read.p99", ms(r.Read.P99))
	case "large":
		lo := o.Large
		lo.Seed = seed
		conn, err := t.Dial()
		if err != nil {
			return err
		}
		defer conn.Close()
		r, err := Large(ctx, bspb.NewByteStreamClient(conn), lo)
		if err != nil {
			return err
		}
		s.add("large.up", r.UploadMBps)
		s.add("large.down", r.DownloadMBps)
		if r.PeakRSS > 0 {
			s.add("large.rss", float64(r.PeakRSS)/1e6)
		}
	case "findmissing":
		fo := o.FindMissing
		fo.Seed = seed
		r, err := FindMissing(ctx, t.Dial, fo)
		if err != nil {
			return err
		}
		s.add("findmissing.idle.p50", ms(r.Idle.P50))
		s.add("findmissing.idle.p99", ms(r.Idle.P99))
		s.add("findmissing.load.p50", ms(r.Loaded.P50))
		s.add("findmissing.load.p99", ms(r.Loaded.P99))
		s.add("findmissing.load.ops", r.LoadOpsPerSec)
	case "zstd":
		zo := o.Zstd
		zo.Seed = seed
		r, err := Zstd(ctx, t.Dial, zo)
		if err != nil {
			return err
		}
		s.add("zstd.ratio", r.Ratio)
		s.add("zstd.encode", r.EncodeAloneMBps)
		s.add("zstd.decode", r.DecodeAloneMBps)
		s.add("zstd.stream.write", r.StreamWriteMBps)
		s.add("zstd.stream.read", r.StreamReadMBps)
		s.add("zstd.stream.write.rel", r.StreamWriteMBps/r.DecodeAloneMBps)
		s.add("zstd.stream.read.rel", r.StreamReadMBps/r.EncodeAloneMBps)
		s.add("zstd.stream.write.plain", r.PlainStreamWrite)
		s.add("zstd.stream.read.plain", r.PlainStreamReadMBps)
		s.add("zstd.stream.write.bound", r.StreamWriteMBps/min(r.DecodeAloneMBps, r.PlainStreamWrite))
		s.add("zstd.stream.read.bound", r.StreamReadMBps/min(r.EncodeAloneMBps, r.PlainStreamReadMBps))
		s.add("zstd.batch.encode", r.BatchEncodeAloneMBps)
		s.add("zstd.batch.decode", r.BatchDecodeAlone)
		s.add("zstd.batch.write", r.BatchWriteMBps)
		s.add("zstd.batch.read", r.BatchReadMBps)
		s.add("zstd.batch.write.rel", r.BatchWriteMBps/r.BatchDecodeAlone)
		s.add("zstd.batch.read.rel", r.BatchReadMBps/r.BatchEncodeAloneMBps)
		s.add("zstd.batch.write.plain", r.PlainBatchWrite)
		s.add("zstd.batch.read.plain", r.PlainBatchReadMBps)
		s.add("zstd.batch.write.bound", r.BatchWriteMBps/min(r.BatchDecodeAlone, r.PlainBatchWrite))
		s.add("zstd.batch.read.bound", r.BatchReadMBps/min(r.BatchEncodeAloneMBps, r.PlainBatchReadMBps))
	case "batch":
		bo := o.Batch
		bo.Seed = seed
		r, err := Batch(ctx, t.Dial, bo)
		if err != nil {
			return err
		}
		s.add("batch.update.ops", r.Update.OpsPerSec())
		s.add("batch.update.mbps", r.Update.MBPerSec())
		s.add("batch.read.ops", r.Read.OpsPerSec())
		s.add("batch.read.mbps", r.Read.MBPerSec())
	}
	return nil
}

// SaveSamples writes results as JSON, for a later --baseline.
func SaveSamples(path string, results map[string]Samples) error {
	data, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// LoadSamples reads what SaveSamples wrote, merging the samples of several
// files (runs taken apart, such as the rounds of compare.sh).
func LoadSamples(paths ...string) (map[string]Samples, error) {
	merged := map[string]Samples{}
	for _, path := range paths {
		if path == "" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var results map[string]Samples
		if err := json.Unmarshal(data, &results); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for org, samples := range results {
			if merged[org] == nil {
				merged[org] = Samples{}
			}
			for name, values := range samples {
				merged[org][name] = append(merged[org][name], values...)
			}
		}
	}
	return merged, nil
}

package e2etest

import (
	"reflect"
	"testing"
)

func TestParseServingLineReadsBothAddresses(t *testing.T) {
	line := `time=2026-11-22T12:00:00.000Z level=INFO msg=serving grpc_address=127.0.0.1:40001 http_address=127.0.0.1:40002` + "\n"
	got, ok := parseServingLine(line)
	if !ok {
		t.Fatalf("parseServingLine(%q) did not recognise the serving line", line)
	}
	if want := (servingLine{grpc: "127.0.0.1:40001", http: "127.0.0.1:40002"}); got != want {
		t.Errorf("parseServingLine = %+v, want %+v", got, want)
	}
}

func TestParseServingLineAcceptsQuotedValuesAndOtherFields(t *testing.T) {
	line := `time=x level=INFO msg="serving" version="dev build" grpc_address="127.0.0.1:1" http_address=127.0.0.1:2 data_dir=/tmp/d`
	got, ok := parseServingLine(line)
	if !ok || got.grpc != "127.0.0.1:1" || got.http != "127.0.0.1:2" {
		t.Errorf("parseServingLine(%q) = %+v, %v", line, got, ok)
	}
}

func TestParseServingLineAcceptsSlogDefaultFormat(t *testing.T) {
	line := `2026/11/22 12:10:14 INFO serving grpc_address=127.0.0.1:40539 http_address=127.0.0.1:42929`
	got, ok := parseServingLine(line)
	if !ok || got.grpc != "127.0.0.1:40539" || got.http != "127.0.0.1:42929" {
		t.Errorf("parseServingLine(%q) = %+v, %v", line, got, ok)
	}
}

func TestParseServingLineIgnoresOtherLines(t *testing.T) {
	for _, line := range []string{
		`time=x level=INFO msg="opening data directory" dir=/tmp/d`,
		`time=x level=INFO msg=serving grpc_address=127.0.0.1:1`, // no HTTP address yet
		`time=x level=INFO msg="not serving" grpc_address=127.0.0.1:1 http_address=127.0.0.1:2`,
		``,
	} {
		if got, ok := parseServingLine(line); ok {
			t.Errorf("parseServingLine(%q) = %+v, want no match", line, got)
		}
	}
}

func TestParseProcessSummaryOfWarmBuild(t *testing.T) {
	out := "INFO: Elapsed time: 3.1s, Critical Path: 0.5s\nINFO: 17 processes: 9 remote cache hit, 8 internal.\nINFO: Build completed successfully, 17 total actions\n"
	got := parseProcessSummary(out)
	want := ProcessSummary{
		Line:   "17 processes: 9 remote cache hit, 8 internal.",
		Total:  17,
		ByKind: map[string]int{"remote cache hit": 9, "internal": 8},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseProcessSummary = %+v, want %+v", got, want)
	}
	if got.RemoteCacheHits() != 9 || got.Internal() != 8 || got.Cacheable() != 9 {
		t.Errorf("hits %d internal %d cacheable %d, want 9 8 9", got.RemoteCacheHits(), got.Internal(), got.Cacheable())
	}
}

func TestParseProcessSummaryOfColdBuildAndSingularForm(t *testing.T) {
	cold := parseProcessSummary("INFO: 17 processes: 8 internal, 9 linux-sandbox.\n")
	if cold.RemoteCacheHits() != 0 || cold.Cacheable() != 9 || cold.ByKind["linux-sandbox"] != 9 {
		t.Errorf("cold summary parsed as %+v", cold)
	}
	one := parseProcessSummary("INFO: 1 process: 1 internal.\n")
	if one.Total != 1 || one.Internal() != 1 {
		t.Errorf("singular summary parsed as %+v", one)
	}
	none := parseProcessSummary("INFO: 0 processes.\n")
	if none.Total != 0 || none.Line != "0 processes." {
		t.Errorf("empty summary parsed as %+v", none)
	}
}

func TestParseProcessSummaryTakesTheLastLine(t *testing.T) {
	got := parseProcessSummary("INFO: 3 processes: 3 internal.\nINFO: 5 processes: 2 remote cache hit, 3 internal.\n")
	if got.Total != 5 || got.RemoteCacheHits() != 2 {
		t.Errorf("parseProcessSummary took %+v, want the last summary", got)
	}
}

func TestTestStatusReadsTheSummary(t *testing.T) {
	r := newResult(nil, "test", "", ""+
		"//e2e/testdata/workspace:hello_test                             (cached) PASSED in 0.3s\n"+
		"//e2e/testdata/workspace:hello_test_two                                  FAILED in 1.0s\n"+
		"\nExecuted 0 out of 1 test: 1 test passes.\n")
	for label, want := range map[string]string{
		HelloTest: "(cached) PASSED",
		"//e2e/testdata/workspace:hello_test_two": "FAILED",
		"//e2e/testdata/workspace:missing":        "",
	} {
		if got := r.TestStatus(label); got != want {
			t.Errorf("TestStatus(%s) = %q, want %q", label, got, want)
		}
	}
}

package e2etest

import (
	"regexp"
	"strconv"
	"strings"
)

// Result is what one Bazel command printed.
type Result struct {
	Args      []string // everything after the bazel binary
	Stdout    string
	Stderr    string
	ExitCode  int
	Processes ProcessSummary

	command string // the Bazel command and the caller's arguments, without the harness's flags
}

func newResult(args []string, command string, stdout, stderr string) *Result {
	r := &Result{Args: args, Stdout: stdout, Stderr: stderr, command: command}
	r.Processes = parseProcessSummary(r.Output())
	return r
}

// Command is the Bazel command and the caller's arguments, without the flags
// the harness adds and with API keys redacted: what the harness logs.
func (r *Result) Command() string {
	return redact(r.command, secretsIn(r.Args)...)
}

// RedactedOutput is Output with the API keys of the command line cut out, for
// test failure messages.
func (r *Result) RedactedOutput() string {
	return redact(r.Output(), secretsIn(r.Args)...)
}

// Output is stderr followed by stdout. Bazel prints its INFO lines and test
// summary on stderr and the results of info and queries on stdout.
func (r *Result) Output() string { return r.Stderr + r.Stdout }

// TestStatus returns the status Bazel printed for a test label in its test
// summary, e.g. "PASSED", "(cached) PASSED", "FAILED" or "NO STATUS", without
// the timing; "" when the label is not in the summary.
func (r *Result) TestStatus(label string) string {
	for _, line := range strings.Split(r.Output(), "\n") {
		rest, ok := strings.CutPrefix(line, label+" ")
		if !ok {
			continue
		}
		status := strings.TrimSpace(rest)
		if i := strings.LastIndex(status, " in "); i >= 0 {
			status = status[:i]
		}
		return status
	}
	return ""
}

// ProcessSummary is Bazel's closing count of the processes a command ran, e.g.
//
//	INFO: 17 processes: 9 remote cache hit, 8 internal.
//	INFO: 17 processes: 8 internal, 9 linux-sandbox.
type ProcessSummary struct {
	Line   string         // the summary line as printed, "" when there was none
	Total  int            // the N of "N processes"
	ByKind map[string]int // how each process ran: "remote cache hit", "internal", "linux-sandbox", ...
}

// RemoteCacheHits is how many processes Bazel took from the remote cache.
func (p ProcessSummary) RemoteCacheHits() int { return p.ByKind["remote cache hit"] }

// Internal is how many processes were Bazel's own bookkeeping (symlink trees,
// writing files), which never touch a cache.
func (p ProcessSummary) Internal() int { return p.ByKind["internal"] }

// Cacheable is how many processes could have come from a remote cache: all of
// them but the internal ones.
func (p ProcessSummary) Cacheable() int { return p.Total - p.Internal() }

var (
	processSummaryLine = regexp.MustCompile(`(?m)^INFO: (\d+) process(?:es)?(?:: (.*?))?\.?$`)
	processKind        = regexp.MustCompile(`^(\d+) (.+)$`)
)

// parseProcessSummary reads the last process summary line in a command's
// output.
func parseProcessSummary(output string) ProcessSummary {
	matches := processSummaryLine.FindAllStringSubmatch(output, -1)
	if len(matches) == 0 {
		return ProcessSummary{ByKind: map[string]int{}}
	}
	m := matches[len(matches)-1]
	total, _ := strconv.Atoi(m[1])
	p := ProcessSummary{Line: strings.TrimPrefix(m[0], "INFO: "), Total: total, ByKind: map[string]int{}}
	for _, part := range strings.Split(m[2], ",") {
		if km := processKind.FindStringSubmatch(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), "."))); km != nil {
			n, _ := strconv.Atoi(km[1])
			p.ByKind[km[2]] += n
		}
	}
	return p
}

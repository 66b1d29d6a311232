package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcRSS reads the resident set size of process pid from
// /proc/PID/status (Linux): cheap enough to sample every few milliseconds
// without disturbing the server.
func ProcRSS(pid int) func() (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	return func() (int64, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		for line := range bytes.Lines(data) {
			if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
				return kb << 10, err
			}
		}
		return 0, fmt.Errorf("%s has no VmRSS line", path)
	}
}

// MetricsRSS reads process_resident_memory_bytes from a Prometheus
// endpoint, for a server on another machine or without a known pid. Each
// sample is one scrape, so sample less often than with ProcRSS.
func MetricsRSS(url string) func() (int64, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() (int64, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			io.Copy(io.Discard, resp.Body)
			return 0, fmt.Errorf("%s: %s", url, resp.Status)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
				v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				return int64(v), err
			}
		}
		return 0, fmt.Errorf("%s has no process_resident_memory_bytes", url)
	}
}

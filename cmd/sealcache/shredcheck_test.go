package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestShredCheckExitCodes(t *testing.T) {
	t.Setenv("SEALCACHE_API_KEY", "")
	answer := `{"org_id":"o1","org_exists":true,"objects":3,"sealed":3,"opened":0,"shredded":true}`
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/shred-check" || r.URL.Query().Get("org_id") != "o1" || r.Header.Get("x-api-key") != "op" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(answer))
	}))
	defer srv.Close()
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := runShredCheck(context.Background(), args, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := run("--server", srv.URL, "--api_key", "op", "--org", "o1"); code != 0 || !strings.Contains(out, "shredded: no object") {
		t.Errorf("shredded org: exit %d, %s", code, out)
	}
	answer = `{"org_id":"o1","org_exists":true,"objects":3,"sealed":3,"opened":2,"shredded":false}`
	if code, out := run("--server", srv.URL, "--api_key", "op", "--org", "o1"); code != 1 || !strings.Contains(out, "NOT shredded") {
		t.Errorf("readable data: exit %d, %s", code, out)
	}
	status, answer = http.StatusForbidden, "the shred check needs the operator key"
	if code, out := run("--server", srv.URL, "--api_key", "op", "--org", "o1"); code != 1 || !strings.Contains(out, "operator key") {
		t.Errorf("refused: exit %d, %s", code, out)
	}
	if code, _ := run("--server", srv.URL, "--org", "o1"); code != 2 {
		t.Errorf("no key: exit %d, want 2", code)
	}
}

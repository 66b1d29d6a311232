package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sealcache/sealcache/server"
)

// runShredCheck asks a running server to try to open every stored object
// of an org and to search its metadata store for copies of the org's
// deleted key material: sealcache shred-check --org ID. It exits 0 only
// when no object sealed under a deleted key opens and no copy is left.
func runShredCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sealcache shred-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	serverURL := fs.String("server", envOr("SEALCACHE_SERVER", defaultServerURL), "the server's HTTP address")
	apiKey := fs.String("api_key", os.Getenv("SEALCACHE_API_KEY"), "the operator key (default $SEALCACHE_API_KEY)")
	org := fs.String("org", "", "id of the org to check (sealcache admin orgs list)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *org == "" || *apiKey == "" {
		fmt.Fprintln(stderr, "sealcache shred-check: give --org ID and the operator key with --api_key or SEALCACHE_API_KEY")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(*serverURL, "/")+"/v1/shred-check?org_id="+url.QueryEscape(*org), nil)
	if err != nil {
		fmt.Fprintf(stderr, "sealcache shred-check: %v\n", err)
		return 2
	}
	req.Header.Set("x-api-key", *apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sealcache shred-check: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "sealcache shred-check: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	var r server.ShredCheckResponse
	if err := json.Unmarshal(body, &r); err != nil {
		fmt.Fprintf(stderr, "sealcache shred-check: unexpected answer: %v\n", err)
		return 1
	}
	if *asJSON {
		stdout.Write(body)
	} else {
		if !r.OrgExists {
			fmt.Fprintf(stdout, "org %s does not exist (deleted, or a mistyped id); checking what is left of it on disk\n", r.OrgID)
		}
		fmt.Fprintf(stdout, "org %s: %d objects stored, %d sealed, %d plain; %d sealed objects opened\n", r.OrgID, r.Objects, r.Sealed, r.Plain, r.Opened)
		if r.KeyError != "" {
			fmt.Fprintf(stdout, "current key: %s\n", r.KeyError)
		}
		for _, f := range r.KeyMaterialLeft {
			fmt.Fprintf(stdout, "deleted key material found: %s half of key %s in %s: %s\n", f.Half, f.KeyID, f.Where, f.Problem)
		}
		switch {
		case r.Shredded:
			fmt.Fprintln(stdout, "shredded: no object sealed under a deleted key opens, and no deleted key material is left in the metadata store")
		case len(r.KeyMaterialLeft) > 0:
			fmt.Fprintln(stdout, "NOT shredded: copies of deleted key material are left in the metadata store")
		default:
			fmt.Fprintln(stdout, "NOT shredded: objects sealed under a deleted key still open")
		}
	}
	if !r.Shredded {
		return 1
	}
	return 0
}

// defaultServerURL is where the admin commands look for a server when
// neither --server nor $SEALCACHE_SERVER says.
const defaultServerURL = "http://127.0.0.1:8080"

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

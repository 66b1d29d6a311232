package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/server/adminapi/adminapitest"
)

// cliResult is what one "sealcache admin ..." run printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// admin runs the CLI against env with the given key (none if "").
func admin(t *testing.T, env *adminapitest.Env, key string, args ...string) cliResult {
	t.Helper()
	t.Setenv("SEALCACHE_API_KEY", "")
	t.Setenv("SEALCACHE_SERVER", "")
	full := []string{"--server", env.URL}
	if key != "" {
		full = append(full, "--api_key", key)
	}
	var stdout, stderr bytes.Buffer
	code := runAdmin(t.Context(), append(full, args...), &stdout, &stderr)
	return cliResult{stdout.String(), stderr.String(), code}
}

func (r cliResult) want(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	all := r.stdout + r.stderr
	for _, s := range contains {
		if !strings.Contains(all, s) {
			t.Errorf("output does not contain %q:\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

func (r cliResult) json(t *testing.T) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("--json printed %q: %v", r.stdout, err)
	}
	return out
}

func TestAdminEncryptionCommands(t *testing.T) {
	env := adminapitest.Start(t)
	key := env.AdminSecret
	uri := env.CreateLocalKey(t, "customer")

	admin(t, env, key, "encryption", "status").want(t, 0, "State:", "Disabled", "Grant for gcp-kms:", "sealcache@operator-project.iam.gserviceaccount.com")
	admin(t, env, key, "encryption", "enable").want(t, 2, "needs --key_uri")
	admin(t, env, key, "encryption", "enable", "--key_uri", "local-kms://missing").want(t, 1, "failed_precondition", "customer_key_uri: ", "key not found")
	admin(t, env, key, "encryption", "enable", "--key_uri", "nonsense").want(t, 1, "invalid_argument", "customer_key_uri: ")

	enabled := admin(t, env, key, "encryption", "enable", "--key_uri", uri)
	enabled.want(t, 0, "CMEK is enabled with key id", "Enabled", uri)

	status := admin(t, env, key, "--json", "encryption", "status").json(t)
	cfg := status["config"].(map[string]any)
	if cfg["enabled"] != true || cfg["customerKeyUri"] != uri || !strings.Contains(enabled.stdout, cfg["keyId"].(string)) {
		t.Errorf("status --json after enable: %v", status)
	}
	// Flags after the command work too.
	admin(t, env, key, "encryption", "check", "--json").want(t, 0, `"lastKmsSuccess"`)
	admin(t, env, key, "encryption", "check").want(t, 0, "The key works")

	admin(t, env, key, "encryption", "disable").want(t, 2, "cannot be undone", "--yes")
	admin(t, env, key, "encryption", "status").want(t, 0, "Enabled")
	admin(t, env, key, "encryption", "disable", "--yes").want(t, 0, "CMEK is disabled", "10m0s")
	admin(t, env, key, "encryption", "status").want(t, 0, "Disabled")
	admin(t, env, key, "encryption", "check").want(t, 1, "failed_precondition", "CMEK is disabled")
}

func TestAdminKeysCommands(t *testing.T) {
	env := adminapitest.Start(t)
	key := env.AdminSecret

	created := admin(t, env, key, "keys", "create", "--role", "writer", "--label", "ci")
	created.want(t, 0, "Created writer key", "shown only now", "--remote_header=x-api-key=sck_")
	secret := regexp.MustCompile(`sck_\S+`).FindString(created.stdout)
	if k, err := env.Auth.Authenticate(t.Context(), secret); err != nil || k.Role != orgs.RoleWriter {
		t.Fatalf("printed secret authenticates as %v, %v", k, err)
	}
	id := regexp.MustCompile(`key (k\w+)`).FindStringSubmatch(created.stdout)[1]

	list := admin(t, env, key, "keys", "list")
	list.want(t, 0, "ID", "ROLE", "LAST USED", "initial admin", id)
	if !regexp.MustCompile(`(?m)^` + id + `\s+writer\s+`).MatchString(list.stdout) {
		t.Errorf("keys list has no aligned row for %s:\n%s", id, list.stdout)
	}
	keys := admin(t, env, key, "keys", "list", "--json").json(t)["keys"].([]any)
	if len(keys) != 2 {
		t.Errorf("keys list --json: %v", keys)
	}

	admin(t, env, key, "keys", "create").want(t, 2, "needs --role")
	admin(t, env, key, "keys", "create", "--role", "boss").want(t, 2, "use admin, writer or reader")
	admin(t, env, key, "keys", "revoke").want(t, 2, "takes ID")
	admin(t, env, key, "keys", "revoke", "kzzzzzzzzzzzz").want(t, 1, "not_found", "id: ")
	admin(t, env, key, "keys", "revoke", id).want(t, 0, "Revoked API key "+id)
	if _, err := env.Auth.Authenticate(t.Context(), secret); err == nil {
		t.Error("revoked key still authenticates")
	}
	// The revoked writer key is now refused, with exit status 1.
	admin(t, env, secret, "keys", "list").want(t, 1, "unauthenticated", "SEALCACHE_API_KEY")
}

func TestAdminAuditCommand(t *testing.T) {
	env := adminapitest.Start(t)
	key := env.AdminSecret
	for range 3 {
		admin(t, env, key, "keys", "create", "--role", "reader").want(t, 0)
	}
	page := admin(t, env, key, "audit", "--limit", "2")
	page.want(t, 0, "TIME", "ACTION", "api_key_created", "Older events: sealcache admin audit --page_token ")
	token := regexp.MustCompile(`--page_token (\S+)`).FindStringSubmatch(page.stdout)[1]
	rest := admin(t, env, key, "audit", "--json", "--page_token", token).json(t)
	if events := rest["events"].([]any); len(events) != 1 || rest["nextPageToken"] != "" {
		t.Errorf("second page: %v", rest)
	}
	admin(t, env, key, "audit", "--page_token", "bogus").want(t, 1, "invalid_argument", "page_token: ")
}

func TestAdminOrgsCommands(t *testing.T) {
	env := adminapitest.Start(t)
	op := env.OperatorSecret

	created := admin(t, env, op, "orgs", "create", "acme")
	created.want(t, 0, "Created org acme", "First admin key", "--remote_cache=grpc://")
	orgID := regexp.MustCompile(`id (o\w+)`).FindStringSubmatch(created.stdout)[1]
	acmeAdmin := regexp.MustCompile(`sck_\S+`).FindString(created.stdout)
	env.SetStoredBytes(orgID, 3<<20)
	admin(t, env, acmeAdmin, "encryption", "enable", "--key_uri", env.CreateLocalKey(t, "acme")).want(t, 0)

	list := admin(t, env, op, "orgs", "list")
	list.want(t, 0, "NAME", "STORED", "CMEK", "default")
	if !regexp.MustCompile(`(?m)^` + orgID + `\s+acme\s+.*3\.0 MiB\s+on$`).MatchString(list.stdout) {
		t.Errorf("orgs list has no row for acme with 3.0 MiB and CMEK on:\n%s", list.stdout)
	}
	admin(t, env, op, "orgs", "create", "acme").want(t, 1, "already_exists", "name: ")
	admin(t, env, op, "orgs", "create").want(t, 2, "takes NAME")
	admin(t, env, op, "orgs", "delete", orgID).want(t, 2, "--confirm NAME")
	admin(t, env, op, "orgs", "delete", orgID, "--confirm", "acne").want(t, 1, "invalid_argument", "confirm_name: ")

	// Org keys cannot manage orgs, and the operator key cannot manage an org.
	admin(t, env, env.AdminSecret, "orgs", "list").want(t, 1, "permission_denied", "operator key")
	admin(t, env, op, "keys", "list").want(t, 1, "permission_denied", "admin key")

	admin(t, env, op, "orgs", "delete", "--confirm", "acme", orgID).want(t, 0, "Deleted org acme")
	// Enabling CMEK earlier deleted the org's objects once; deleting the
	// org deletes them again.
	if got := env.DeletedOrgData(); len(got) == 0 || got[len(got)-1] != orgID {
		t.Errorf("stored objects deleted for %v; want the deleted org last", got)
	}
	orgsJSON := admin(t, env, op, "orgs", "list", "--json").json(t)["orgs"].([]any)
	if len(orgsJSON) != 1 {
		t.Errorf("orgs after delete: %v", orgsJSON)
	}
	admin(t, env, acmeAdmin, "encryption", "status").want(t, 1, "unauthenticated")
}

func TestAdminUsageAndConnection(t *testing.T) {
	env := adminapitest.Start(t)
	admin(t, env, "", "help").want(t, 0, "Usage: sealcache admin")
	admin(t, env, "", "--help").want(t, 0, "encryption enable --key_uri URI")
	admin(t, env, "", "").want(t, 2, "unknown command")
	admin(t, env, "").want(t, 2, "missing command")
	admin(t, env, "", "keys", "rotate").want(t, 2, `unknown command "keys rotate"`)
	admin(t, env, "", "keys", "list", "--bogus").want(t, 2, "flag provided but not defined")
	admin(t, env, "", "keys", "list", "extra").want(t, 2, "takes no arguments")
	admin(t, env, "", "keys", "list").want(t, 1, "unauthenticated", "no API key", "--api_key")

	// The key may come from the environment.
	t.Setenv("SEALCACHE_API_KEY", env.AdminSecret)
	var stdout, stderr bytes.Buffer
	if code := runAdmin(t.Context(), []string{"--server", env.URL, "keys", "list"}, &stdout, &stderr); code != 0 {
		t.Errorf("key from SEALCACHE_API_KEY: exit %d: %s", code, stderr.String())
	}

	// A server that is not there: exit 1 with the reason.
	env.Server.Close()
	admin(t, env, env.AdminSecret, "keys", "list").want(t, 1, "unavailable")
}

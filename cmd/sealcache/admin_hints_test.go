package main

import (
	"net/http"
	"regexp"

	"testing"

	"github.com/sealcache/sealcache/server/adminapi"
	"github.com/sealcache/sealcache/server/adminapi/adminapitest"
)

// An operator who types the org's name where its id goes is told the id
// and the command to run.
func TestAdminOrgsDeleteByNameSaysToUseTheID(t *testing.T) {
	env := adminapitest.Start(t)
	op := env.OperatorSecret
	created := admin(t, env, op, "--json", "orgs", "create", "acme").json(t)
	id := created["org"].(map[string]any)["id"].(string)

	admin(t, env, op, "orgs", "delete", "acme", "--confirm", "acme").want(t, 1,
		`"acme" is the name of an org; orgs delete takes its id`, "sealcache admin orgs delete "+id+" --confirm acme")
	admin(t, env, op, "orgs", "delete", "ozzzzzzzzzzzzz", "--confirm", "acme").want(t, 1,
		"not_found", `orgs delete takes the org's id, as "sealcache admin orgs list" shows it`)
	admin(t, env, op, "orgs", "delete", id, "--confirm", "acme").want(t, 0, "Deleted org acme")
}

// Enabling says what happened to the data stored before; without operator
// identities configured, status says so instead of showing nothing to
// grant.
func TestAdminEncryptionTextsSayWhatHappens(t *testing.T) {
	env := adminapitest.Start(t, func(_ *http.ServeMux, deps *adminapi.Deps) { deps.OperatorPrincipals = nil })
	key := env.AdminSecret
	status := admin(t, env, key, "encryption", "status")
	status.want(t, 0)
	for _, line := range []string{
		`Grant for gcp-kms:\s+not configured on this server \(the operator sets --gcp_kms_principal\); ask the operator which identity to grant`,
		`Grant for aws-kms:\s+not configured on this server \(the operator sets --aws_kms_principal\)`,
		`Grant for local-kms:\s+nothing to grant: local keys are for trying CMEK, files the operator makes with "sealcache kms create-local-key NAME"`,
	} {
		if !regexp.MustCompile(line).MatchString(status.stdout) {
			t.Errorf("encryption status lacks a line like %s:\n%s", line, status.stdout)
		}
	}
	admin(t, env, key, "encryption", "enable", "--key_uri", env.CreateLocalKey(t, "texts")).want(t, 0,
		"CMEK is enabled with key id", "The org's objects stored before were deleted")
	admin(t, env, key, "encryption", "disable", "--yes").want(t, 0, "The objects sealed under the old key were deleted")
}

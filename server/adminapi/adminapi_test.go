package adminapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/orgs"
	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
	"github.com/sealcache/sealcache/server/adminapi/adminapitest"
)

// clients are connect clients that send one API key.
type clients struct {
	org      adminv1connect.OrgServiceClient
	enc      adminv1connect.EncryptionServiceClient
	operator adminv1connect.OperatorServiceClient
}

func newClients(env *adminapitest.Env, secret string, opts ...connect.ClientOption) clients {
	opts = append(opts, connect.WithInterceptors(withKey(secret)))
	hc := adminapitest.H2CClient()
	return clients{
		org:      adminv1connect.NewOrgServiceClient(hc, env.URL, opts...),
		enc:      adminv1connect.NewEncryptionServiceClient(hc, env.URL, opts...),
		operator: adminv1connect.NewOperatorServiceClient(hc, env.URL, opts...),
	}
}

func withKey(secret string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if secret != "" {
				req.Header().Set("x-api-key", secret)
			}
			return next(ctx, req)
		}
	}
}

// call is one RPC with an empty or typical request, for tables over all RPCs.
type call struct {
	name string
	do   func(ctx context.Context, c clients) error
}

var orgAdminCalls = []call{
	{"OrgService.GetOrg", func(ctx context.Context, c clients) error {
		_, err := c.org.GetOrg(ctx, connect.NewRequest(&adminv1.GetOrgRequest{}))
		return err
	}},
	{"OrgService.ListApiKeys", func(ctx context.Context, c clients) error {
		_, err := c.org.ListApiKeys(ctx, connect.NewRequest(&adminv1.ListApiKeysRequest{}))
		return err
	}},
	{"OrgService.CreateApiKey", func(ctx context.Context, c clients) error {
		_, err := c.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: adminv1.Role_ROLE_ADMIN, Label: "x"}))
		return err
	}},
	{"OrgService.RevokeApiKey", func(ctx context.Context, c clients) error {
		_, err := c.org.RevokeApiKey(ctx, connect.NewRequest(&adminv1.RevokeApiKeyRequest{Id: "kaaaaaaaaaaaa"}))
		return err
	}},
	{"OrgService.ListAuditEvents", func(ctx context.Context, c clients) error {
		_, err := c.org.ListAuditEvents(ctx, connect.NewRequest(&adminv1.ListAuditEventsRequest{}))
		return err
	}},
	{"EncryptionService.GetEncryptionConfig", func(ctx context.Context, c clients) error {
		_, err := c.enc.GetEncryptionConfig(ctx, connect.NewRequest(&adminv1.GetEncryptionConfigRequest{}))
		return err
	}},
	{"EncryptionService.SetEncryptionConfig", func(ctx context.Context, c clients) error {
		_, err := c.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: false}))
		return err
	}},
	{"EncryptionService.CheckEncryptionKey", func(ctx context.Context, c clients) error {
		_, err := c.enc.CheckEncryptionKey(ctx, connect.NewRequest(&adminv1.CheckEncryptionKeyRequest{}))
		return err
	}},
}

var operatorCalls = []call{
	{"OperatorService.CreateOrg", func(ctx context.Context, c clients) error {
		_, err := c.operator.CreateOrg(ctx, connect.NewRequest(&adminv1.CreateOrgRequest{Name: "acme"}))
		return err
	}},
	{"OperatorService.ListOrgs", func(ctx context.Context, c clients) error {
		_, err := c.operator.ListOrgs(ctx, connect.NewRequest(&adminv1.ListOrgsRequest{}))
		return err
	}},
	{"OperatorService.DeleteOrg", func(ctx context.Context, c clients) error {
		_, err := c.operator.DeleteOrg(ctx, connect.NewRequest(&adminv1.DeleteOrgRequest{OrgId: "oaaaaaaaaaaaa", ConfirmName: "x"}))
		return err
	}},
}

func wantCode(t *testing.T, err error, code connect.Code, msgContains ...string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	for _, s := range msgContains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestWriterReaderAndOperatorKeysCannotCallOrgAdminRPCs(t *testing.T) {
	env := adminapitest.Start(t)
	_, writer := env.NewKey(t, orgs.RoleWriter)
	_, reader := env.NewKey(t, orgs.RoleReader)
	for _, k := range []struct{ role, secret, says string }{
		{"writer", writer, "role writer"},
		{"reader", reader, "role reader"},
		{"operator", env.OperatorSecret, "operator key"},
	} {
		c := newClients(env, k.secret)
		for _, rpc := range orgAdminCalls {
			t.Run(k.role+"/"+rpc.name, func(t *testing.T) {
				wantCode(t, rpc.do(t.Context(), c), connect.CodePermissionDenied, k.says, "admin")
			})
		}
	}
}

func TestOrgKeysCannotCallOperatorService(t *testing.T) {
	env := adminapitest.Start(t)
	_, writer := env.NewKey(t, orgs.RoleWriter)
	_, reader := env.NewKey(t, orgs.RoleReader)
	for _, k := range []struct{ role, secret string }{{"admin", env.AdminSecret}, {"writer", writer}, {"reader", reader}} {
		c := newClients(env, k.secret)
		for _, rpc := range operatorCalls {
			t.Run(k.role+"/"+rpc.name, func(t *testing.T) {
				wantCode(t, rpc.do(t.Context(), c), connect.CodePermissionDenied, "role "+k.role, "operator key")
			})
		}
	}
}

func TestMissingOrUnknownKeyIsUnauthenticated(t *testing.T) {
	env := adminapitest.Start(t)
	for _, secret := range []string{"", "sck_kaaaaaaaaaaaa_bm90IGEga2V5IGF0IGFsbCBqdXN0IHRlc3RpbmcgdGhpcw"} {
		c := newClients(env, secret)
		for _, rpc := range slices.Concat(orgAdminCalls, operatorCalls) {
			t.Run(rpc.name, func(t *testing.T) {
				wantCode(t, rpc.do(t.Context(), c), connect.CodeUnauthenticated, "API key")
			})
		}
	}
}

func TestPlainJSONOverHTTP1(t *testing.T) {
	env := adminapitest.Start(t)
	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", env.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", env.AdminSecret)
		resp, err := http.DefaultClient.Do(req) // HTTP/1.1
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 1 {
			t.Errorf("spoke %s, want HTTP/1.1", resp.Proto)
		}
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s answered %s: %v", path, raw, err)
		}
		return resp.StatusCode, out
	}

	status, out := post("/sealcache.admin.v1.OrgService/GetOrg", "{}")
	if status != 200 || out["org"].(map[string]any)["name"] != "default" {
		t.Errorf("GetOrg: %d %v", status, out)
	}
	status, out = post("/sealcache.admin.v1.EncryptionService/GetEncryptionConfig", "{}")
	cfg := out["config"].(map[string]any)
	if status != 200 || cfg["enabled"] != nil || cfg["keyCacheTtlSeconds"] != "600" || len(cfg["supportedProviders"].([]any)) != 3 {
		t.Errorf("GetEncryptionConfig: %d %v", status, out)
	}
	status, out = post("/sealcache.admin.v1.EncryptionService/SetEncryptionConfig", `{"enabled": true, "customerKeyUri": "ftp://nope"}`)
	if status != 400 || out["code"] != "invalid_argument" || !strings.HasPrefix(out["message"].(string), "customer_key_uri: ") {
		t.Errorf("bad URI: %d %v", status, out)
	}
}

func TestGRPCClientOverH2C(t *testing.T) {
	env := adminapitest.Start(t)
	c := newClients(env, env.AdminSecret, connect.WithGRPC())
	ctx := t.Context()
	org, err := c.org.GetOrg(ctx, connect.NewRequest(&adminv1.GetOrgRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if org.Msg.GetOrg().GetId() != env.DefaultOrg.ID || org.Msg.GetHits() != 7 {
		t.Errorf("GetOrg = %v", org.Msg)
	}
	// Errors keep code and field detail over gRPC too.
	_, err = c.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument, "role: ")
	if field := badRequestField(err); field != "role" {
		t.Errorf("BadRequest detail names %q, want role", field)
	}
}

func badRequestField(err error) string {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return ""
	}
	for _, d := range cerr.Details() {
		v, derr := d.Value()
		if br, ok := v.(*errdetails.BadRequest); derr == nil && ok && len(br.FieldViolations) > 0 {
			return br.FieldViolations[0].Field
		}
	}
	return ""
}

func TestValidationErrorsNameTheField(t *testing.T) {
	env := adminapitest.Start(t)
	admin := newClients(env, env.AdminSecret)
	operator := newClients(env, env.OperatorSecret)
	enable := func(uri string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := admin.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: true, CustomerKeyUri: uri}))
			return err
		}
	}
	for _, tc := range []struct {
		name  string
		do    func(ctx context.Context) error
		code  connect.Code
		field string
		cause string
	}{
		{"enable without URI", enable(""), connect.CodeInvalidArgument, "customer_key_uri", "required"},
		{"unsupported provider", enable("vault://k"), connect.CodeInvalidArgument, "customer_key_uri", "not a key URI of a provider"},
		{"malformed local URI", enable("local-kms://bad name"), connect.CodeInvalidArgument, "customer_key_uri", "invalid key URI"},
		{"unknown key", enable("local-kms://missing"), connect.CodeFailedPrecondition, "customer_key_uri", "key not found"},
		{"key role unset", func(ctx context.Context) error {
			_, err := admin.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Label: "ci"}))
			return err
		}, connect.CodeInvalidArgument, "role", "choose ROLE_ADMIN"},
		{"operator role for org key", func(ctx context.Context) error {
			_, err := admin.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: adminv1.Role_ROLE_OPERATOR}))
			return err
		}, connect.CodeInvalidArgument, "role", "choose ROLE_ADMIN"},
		{"label on two lines", func(ctx context.Context) error {
			_, err := admin.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: adminv1.Role_ROLE_READER, Label: "a\nb"}))
			return err
		}, connect.CodeInvalidArgument, "label", "one line"},
		{"revoke unknown key", func(ctx context.Context) error {
			_, err := admin.org.RevokeApiKey(ctx, connect.NewRequest(&adminv1.RevokeApiKeyRequest{Id: "kzzzzzzzzzzzz"}))
			return err
		}, connect.CodeNotFound, "id", "not found"},
		{"bad page token", func(ctx context.Context) error {
			_, err := admin.org.ListAuditEvents(ctx, connect.NewRequest(&adminv1.ListAuditEventsRequest{PageToken: "???"}))
			return err
		}, connect.CodeInvalidArgument, "page_token", "empty token"},
		{"bad org name", func(ctx context.Context) error {
			_, err := operator.operator.CreateOrg(ctx, connect.NewRequest(&adminv1.CreateOrgRequest{Name: "Acme Corp"}))
			return err
		}, connect.CodeInvalidArgument, "name", "a-z, 0-9"},
		{"taken org name", func(ctx context.Context) error {
			_, err := operator.operator.CreateOrg(ctx, connect.NewRequest(&adminv1.CreateOrgRequest{Name: "default"}))
			return err
		}, connect.CodeAlreadyExists, "name", "pick another name"},
		{"delete with wrong confirmation", func(ctx context.Context) error {
			_, err := operator.operator.DeleteOrg(ctx, connect.NewRequest(&adminv1.DeleteOrgRequest{OrgId: env.DefaultOrg.ID, ConfirmName: "defualt"}))
			return err
		}, connect.CodeInvalidArgument, "confirm_name", "does not match"},
		{"delete unknown org", func(ctx context.Context) error {
			_, err := operator.operator.DeleteOrg(ctx, connect.NewRequest(&adminv1.DeleteOrgRequest{OrgId: "ozzzzzzzzzzzz", ConfirmName: "x"}))
			return err
		}, connect.CodeNotFound, "org_id", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do(t.Context())
			wantCode(t, err, tc.code, tc.cause)
			var cerr *connect.Error
			errors.As(err, &cerr)
			if !strings.HasPrefix(cerr.Message(), tc.field+": ") {
				t.Errorf("message %q does not start with %q", cerr.Message(), tc.field+": ")
			}
			if got := badRequestField(err); got != tc.field {
				t.Errorf("BadRequest detail names %q, want %q", got, tc.field)
			}
		})
	}
	// Nothing of the refused calls changed the org.
	if _, err := env.Store.CurrentKey(t.Context(), env.DefaultOrg.ID); !errors.Is(err, encryption.ErrNoKeyRecord) {
		t.Errorf("CMEK turned on by a refused call: %v", err)
	}
}

func TestPermissionDeniedByKMSNamesWhatToGrant(t *testing.T) {
	// A local key file the server cannot read stands in for a KMS key the
	// operator's principal may not use.
	env := adminapitest.Start(t)
	admin := newClients(env, env.AdminSecret)
	uri := env.CreateLocalKey(t, "customer")
	if err := kms.DisableLocalKey(env.KMSDir, "customer"); err != nil {
		t.Fatal(err)
	}
	_, err := admin.enc.SetEncryptionConfig(t.Context(), connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: true, CustomerKeyUri: uri}))
	wantCode(t, err, connect.CodeFailedPrecondition, "customer_key_uri: ", "disabled")
}

func auditActions(t *testing.T, env *adminapitest.Env, orgID string) []string {
	t.Helper()
	events, _, err := env.Store.ListAuditEvents(t.Context(), orgID, 500, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Action)
	}
	return out
}

func TestSetEncryptionConfigIsIdempotent(t *testing.T) {
	env := adminapitest.Start(t)
	adminKey, _, err := authenticate(env, env.AdminSecret)
	if err != nil {
		t.Fatal(err)
	}
	c := newClients(env, env.AdminSecret)
	ctx := t.Context()
	uri := env.CreateLocalKey(t, "customer")
	set := func(enabled bool, uri string) *adminv1.EncryptionConfig {
		t.Helper()
		resp, err := c.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: enabled, CustomerKeyUri: uri}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.GetConfig()
	}

	first := set(true, uri)
	second := set(true, uri)
	if !first.GetEnabled() || first.GetKeyId() == "" || second.GetKeyId() != first.GetKeyId() {
		t.Fatalf("enable twice: key %q then %q", first.GetKeyId(), second.GetKeyId())
	}
	if first.GetProvider() != "local-kms" || first.GetCustomerKeyUri() != uri || first.GetLastKmsSuccess() == nil {
		t.Errorf("config after enable: %v", first)
	}
	// Another key while enabled is refused rather than silently shredding.
	other := env.CreateLocalKey(t, "other")
	_, err = c.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: true, CustomerKeyUri: other}))
	wantCode(t, err, connect.CodeFailedPrecondition, "customer_key_uri: ", "disable CMEK first")

	if off := set(false, ""); off.GetEnabled() || off.GetKeyId() != "" {
		t.Errorf("after disable: %v", off)
	}
	set(false, "")

	got := auditActions(t, env, env.DefaultOrg.ID)
	// Newest first: one enable and one disable, each with its delete of
	// the org's stored objects.
	if want := []string{"data_deleted", "cmek_disabled", "data_deleted", "cmek_enabled"}; !slices.Equal(got, want) {
		t.Errorf("audit log %v, want exactly %v", got, want)
	}
	events, _, _ := env.Store.ListAuditEvents(ctx, env.DefaultOrg.ID, 10, "")
	for _, e := range events {
		if e.ActorKeyID != adminKey.ID {
			t.Errorf("event %s by %q, want the admin key %s", e.Action, e.ActorKeyID, adminKey.ID)
		}
	}
}

func authenticate(env *adminapitest.Env, secret string) (orgs.APIKey, string, error) {
	k, err := env.Auth.Authenticate(context.Background(), secret)
	return k, secret, err
}

func TestCheckEncryptionKey(t *testing.T) {
	env := adminapitest.Start(t)
	c := newClients(env, env.AdminSecret)
	ctx := t.Context()
	_, err := c.enc.CheckEncryptionKey(ctx, connect.NewRequest(&adminv1.CheckEncryptionKeyRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition, "CMEK is disabled")

	uri := env.CreateLocalKey(t, "customer")
	if _, err := c.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: true, CustomerKeyUri: uri})); err != nil {
		t.Fatal(err)
	}
	resp, err := c.enc.CheckEncryptionKey(ctx, connect.NewRequest(&adminv1.CheckEncryptionKeyRequest{}))
	if err != nil || resp.Msg.GetConfig().GetLastKmsSuccess() == nil {
		t.Fatalf("check of a good key: %v %v", resp, err)
	}

	// The customer disables the key: the check fails, names the key, and
	// the failure shows in the key health.
	if err := kms.DisableLocalKey(env.KMSDir, "customer"); err != nil {
		t.Fatal(err)
	}
	_, err = c.enc.CheckEncryptionKey(ctx, connect.NewRequest(&adminv1.CheckEncryptionKeyRequest{}))
	wantCode(t, err, connect.CodeFailedPrecondition, "customer_key_uri: ", uri)
	cfg, err := c.enc.GetEncryptionConfig(ctx, connect.NewRequest(&adminv1.GetEncryptionConfigRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Msg.GetConfig().GetLastKmsFailure() == nil || cfg.Msg.GetConfig().GetLastKmsFailureMessage() == "" {
		t.Errorf("key health after a failed check: %v", cfg.Msg.GetConfig())
	}
}

func TestCreateListAndRevokeAPIKeys(t *testing.T) {
	env := adminapitest.Start(t)
	c := newClients(env, env.AdminSecret)
	ctx := t.Context()
	created, err := c.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: adminv1.Role_ROLE_WRITER, Label: "ci"}))
	if err != nil {
		t.Fatal(err)
	}
	secret := created.Msg.GetSecret()
	if k, _, err := authenticate(env, secret); err != nil || k.Role != orgs.RoleWriter || k.OrgID != env.DefaultOrg.ID {
		t.Fatalf("new key authenticates as %v, %v", k, err)
	}
	host := strings.TrimPrefix(env.URL, "http://")
	host = host[:strings.LastIndex(host, ":")]
	wantFlags := []string{"--remote_cache=grpc://" + host + ":1985", "--remote_header=x-api-key=" + secret}
	if !slices.Equal(created.Msg.GetBazelFlags(), wantFlags) {
		t.Errorf("Bazel flags %q, want %q", created.Msg.GetBazelFlags(), wantFlags)
	}

	list, err := c.org.ListApiKeys(ctx, connect.NewRequest(&adminv1.ListApiKeysRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, k := range list.Msg.GetKeys() {
		labels = append(labels, k.GetLabel()+"/"+k.GetRole().String())
	}
	if want := []string{"initial admin/ROLE_ADMIN", "ci/ROLE_WRITER"}; !slices.Equal(labels, want) {
		t.Errorf("keys %v, want %v", labels, want)
	}

	if _, err := c.org.RevokeApiKey(ctx, connect.NewRequest(&adminv1.RevokeApiKeyRequest{Id: created.Msg.GetKey().GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, _, err := authenticate(env, secret); !errors.Is(err, orgs.ErrUnauthenticated) {
		t.Errorf("revoked key still authenticates: %v", err)
	}
	if got, want := auditActions(t, env, env.DefaultOrg.ID), []string{"api_key_revoked", "api_key_created"}; !slices.Equal(got, want) {
		t.Errorf("audit log %v, want %v", got, want)
	}

	// The only admin key cannot revoke itself: nobody could manage the org.
	self, _, _ := authenticate(env, env.AdminSecret)
	_, err = c.org.RevokeApiKey(ctx, connect.NewRequest(&adminv1.RevokeApiKeyRequest{Id: self.ID}))
	wantCode(t, err, connect.CodeFailedPrecondition, "id: ", "last admin key")
}

func TestAuditEventsArePaged(t *testing.T) {
	env := adminapitest.Start(t)
	c := newClients(env, env.AdminSecret)
	ctx := t.Context()
	for range 3 {
		if _, err := c.org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: adminv1.Role_ROLE_READER})); err != nil {
			t.Fatal(err)
		}
	}
	var all []*adminv1.AuditEvent
	token := ""
	for page := 0; page < 5; page++ {
		resp, err := c.org.ListAuditEvents(ctx, connect.NewRequest(&adminv1.ListAuditEventsRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, resp.Msg.GetEvents()...)
		if token = resp.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(all) != 3 || all[0].GetOrgId() != env.DefaultOrg.ID || all[0].GetActorKeyId() == "" || all[0].GetTime() == nil {
		t.Errorf("events %v", all)
	}
}

func TestOperatorCreatesListsAndDeletesOrgs(t *testing.T) {
	env := adminapitest.Start(t)
	op := newClients(env, env.OperatorSecret)
	ctx := t.Context()

	created, err := op.operator.CreateOrg(ctx, connect.NewRequest(&adminv1.CreateOrgRequest{Name: "acme"}))
	if err != nil {
		t.Fatal(err)
	}
	acme := created.Msg.GetOrg()
	env.SetStoredBytes(acme.GetId(), 4096)

	// The first admin key works and manages the new org only.
	acmeAdmin := newClients(env, created.Msg.GetAdminKeySecret())
	got, err := acmeAdmin.org.GetOrg(ctx, connect.NewRequest(&adminv1.GetOrgRequest{}))
	if err != nil || got.Msg.GetOrg().GetName() != "acme" || got.Msg.GetStoredBytes() != 4096 {
		t.Fatalf("GetOrg with the first admin key: %v %v", got, err)
	}
	uri := env.CreateLocalKey(t, "acme")
	if _, err := acmeAdmin.enc.SetEncryptionConfig(ctx, connect.NewRequest(&adminv1.SetEncryptionConfigRequest{Enabled: true, CustomerKeyUri: uri})); err != nil {
		t.Fatal(err)
	}

	list, err := op.operator.ListOrgs(ctx, connect.NewRequest(&adminv1.ListOrgsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, o := range list.Msg.GetOrgs() {
		rows = append(rows, o.GetOrg().GetName())
		if o.GetOrg().GetName() == "acme" && (!o.GetOrg().GetEncryptionEnabled() || o.GetStoredBytes() != 4096) {
			t.Errorf("acme in ListOrgs: %v", o)
		}
	}
	if !slices.Equal(rows, []string{"acme", "default"}) {
		t.Errorf("ListOrgs names %v", rows)
	}

	if _, err := op.operator.DeleteOrg(ctx, connect.NewRequest(&adminv1.DeleteOrgRequest{OrgId: acme.GetId(), ConfirmName: "acme"})); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.CurrentKey(ctx, acme.GetId()); !errors.Is(err, encryption.ErrNoKeyRecord) {
		t.Errorf("key record survived the deletion: %v", err)
	}
	if _, err := env.Store.GetOrg(ctx, acme.GetId()); !errors.Is(err, orgs.ErrNotFound) {
		t.Errorf("org survived the deletion: %v", err)
	}
	// Once when acme enabled CMEK, once when it was deleted.
	if !slices.Equal(env.DeletedOrgData(), []string{acme.GetId(), acme.GetId()}) {
		t.Errorf("stored data deleted for %v", env.DeletedOrgData())
	}
	_, err = acmeAdmin.org.GetOrg(ctx, connect.NewRequest(&adminv1.GetOrgRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated)
	if got, want := auditActions(t, env, ""), []string{"org_deleted", "org_created"}; !slices.Equal(got, want) {
		t.Errorf("operator audit log %v, want %v", got, want)
	}
	// The default org is untouched.
	if _, err := env.Store.GetOrg(ctx, env.DefaultOrg.ID); err != nil {
		t.Error(err)
	}
}

// TestTwoAdminsRevokingEachOtherAtOnceLeaveOne is issue 9, item 12: the
// last-admin check and the revocation are one transaction in the store,
// so two admins revoking each other at the same moment leave one admin.
func TestTwoAdminsRevokingEachOtherAtOnceLeaveOne(t *testing.T) {
	env := adminapitest.Start(t)
	ctx := t.Context()
	current := env.AdminSecret
	for round := range 20 {
		created, err := newClients(env, current).org.CreateApiKey(ctx, connect.NewRequest(&adminv1.CreateApiKeyRequest{Role: adminv1.Role_ROLE_ADMIN, Label: "second admin"}))
		if err != nil {
			t.Fatal(err)
		}
		secrets := [2]string{current, created.Msg.GetSecret()}
		var ids [2]string
		for i, s := range secrets {
			k, _, err := authenticate(env, s)
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = k.ID
		}
		start := make(chan struct{})
		results := make(chan error, 2)
		for i := range 2 {
			go func() {
				<-start
				_, err := newClients(env, secrets[i]).org.RevokeApiKey(ctx, connect.NewRequest(&adminv1.RevokeApiKeyRequest{Id: ids[1-i]}))
				results <- err
			}()
		}
		close(start)
		succeeded := 0
		for range 2 {
			err := <-results
			switch connect.CodeOf(err) {
			case connect.CodeFailedPrecondition, connect.CodeUnauthenticated: // refused, or its own key went first
			default:
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				succeeded++
			}
		}
		keys, err := env.Store.ListAPIKeys(ctx, env.DefaultOrg.ID)
		if err != nil {
			t.Fatal(err)
		}
		if succeeded != 1 || len(keys) != 1 || keys[0].Role != orgs.RoleAdmin {
			t.Fatalf("round %d: %d revocations succeeded, keys left %+v; want 1 and one admin", round, succeeded, keys)
		}
		current = secrets[slices.Index(ids[:], keys[0].ID)]
	}
}

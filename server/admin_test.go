package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	adminv1 "github.com/sealcache/sealcache/proto/sealcache/admin/v1"
	"github.com/sealcache/sealcache/proto/sealcache/admin/v1/adminv1connect"
)

// h2cClient speaks HTTP/2 without TLS, as gRPC clients of the admin API do.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

func TestAdminAPIIsServedOnTheHTTPPortAsJSONAndGRPC(t *testing.T) {
	env := startServer(t)
	// JSON over HTTP/1.1, as curl sends it.
	req, _ := http.NewRequest("POST", env.httpURL+"/sealcache.admin.v1.EncryptionService/GetEncryptionConfig", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", env.adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JSON admin call: %s", resp.Status)
	}

	// gRPC over h2c on the same port.
	client := adminv1connect.NewEncryptionServiceClient(h2cClient(), env.httpURL, connect.WithGRPC())
	call := connect.NewRequest(&adminv1.GetEncryptionConfigRequest{})
	call.Header().Set("x-api-key", env.adminKey)
	got, err := client.GetEncryptionConfig(context.Background(), call)
	if err != nil {
		t.Fatalf("gRPC admin call: %v", err)
	}
	if got.Msg.Config.Enabled {
		t.Errorf("a new org has CMEK off")
	}

	// The settings page is at /.
	code, body := env.httpDo("GET", "/", "", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Errorf("settings page: %d", code)
	}
}

func TestShredCheckEndpointIsForTheOperatorOnly(t *testing.T) {
	env := startServer(t)
	if code, _ := env.httpDo("GET", "/v1/shred-check?org_id="+env.defaultOrg(), env.adminKey, nil); code != http.StatusForbidden {
		t.Errorf("org admin: %d, want 403", code)
	}
	code, body := env.httpDo("GET", "/v1/shred-check?org_id="+env.defaultOrg(), env.operatorKey, nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"shredded":true`) {
		t.Errorf("operator: %d %s", code, body)
	}
}

// The operator's own key cannot be an org's customer key: the operator
// alone could then open the org's data. The refusal says so in one sentence.
func TestEnablingCMEKWithTheOperatorsKeyIsRefusedPlainly(t *testing.T) {
	env := startServer(t)
	err := setCMEK(t, env, env.adminKey, true, env.s.cfg.OperatorKeyURI)
	want := "customer_key_uri: local-kms://operator is the server operator's own key: CMEK needs a second key that your organization controls, so give the URI of one of your KMS keys"
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument || cerr.Message() != want {
		t.Fatalf("enabling CMEK with the operator's key: %v\nwant invalid_argument: %s", err, want)
	}
}

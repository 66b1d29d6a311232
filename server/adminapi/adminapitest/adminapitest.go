// Package adminapitest starts the admin API on a 127.0.0.1 test server with
// real parts: an orgs SQLite store in a temp dir, an encryption.Manager with
// local-kms keys in a temp dir over the in-memory storage fake, and a
// record of stored bytes and deleted orgs. The server speaks HTTP/1.1 and HTTP/2 without TLS (h2c), so
// both JSON and gRPC clients work. For the tests of adminapi, the CLI and
// the settings page.
package adminapitest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/fence"
	"github.com/sealcache/sealcache/cas/memory"
	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/server/adminapi"
)

// OperatorKeyName is the local-kms key wrapping every org's operator half.
const OperatorKeyName = "operator"

// Env is a running admin API with its parts.
type Env struct {
	URL    string // http://127.0.0.1:PORT
	Server *httptest.Server
	Store  *orgs.DB
	Auth   *orgs.Authenticator

	DefaultOrg     orgs.Org
	AdminSecret    string // admin key of DefaultOrg
	OperatorSecret string
	KMSDir         string // local-kms key directory

	mu          sync.Mutex
	storedBytes map[string]int64
	deleted     []string
}

// Option changes the server before it starts, e.g. to add the settings page.
type Option func(mux *http.ServeMux, deps *adminapi.Deps)

// Start starts the server and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := orgs.OpenSQLite(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	boot, err := store.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := orgs.NewAuthenticator(store, orgs.AuthConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)

	kmsDir := filepath.Join(dir, "kms")
	if err := kms.CreateLocalKey(kmsDir, OperatorKeyName); err != nil {
		t.Fatal(err)
	}
	opener := kms.NewOpener(kms.Config{LocalDir: kmsDir})
	t.Cleanup(func() { opener.Close() })
	env := &Env{
		Store: store, Auth: auth, DefaultOrg: boot.DefaultOrg,
		AdminSecret: boot.AdminSecret, OperatorSecret: boot.OperatorSecret,
		KMSDir: kmsDir, storedBytes: map[string]int64{},
	}
	objects := &recordingObjects{Store: memory.New(), env: env}
	manager, err := encryption.NewManager(encryption.ManagerConfig{
		Records:        store,
		OpenKMS:        opener.Open,
		Auditor:        store,
		OperatorKeyURI: "local-kms://" + OperatorKeyName,
		Objects:        objects,
		Fence:          fence.New(objects),
	})
	if err != nil {
		t.Fatal(err)
	}

	deps := adminapi.Deps{
		Metadata:   store,
		Auth:       auth,
		Encryption: manager,
		KeyRecords: store,
		OrgStats: func(_ context.Context, orgID string) (int64, uint64, uint64) {
			env.mu.Lock()
			defer env.mu.Unlock()
			return env.storedBytes[orgID], 7, 3
		},
		Providers:          []string{"gcp-kms", "aws-kms", "local-kms"},
		OperatorPrincipals: map[string]string{"gcp-kms": "sealcache@operator-project.iam.gserviceaccount.com", "aws-kms": "arn:aws:iam::111122223333:role/sealcache"},
		KeyCacheTTL:        10 * time.Minute,
	}
	mux := http.NewServeMux()
	for _, o := range opts {
		o(mux, &deps)
	}
	api, err := adminapi.New(deps)
	if err != nil {
		t.Fatal(err)
	}
	api.Register(mux)

	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	env.Server, env.URL = srv, srv.URL
	return env
}

// CreateLocalKey creates a customer key usable as local-kms://name.
func (e *Env) CreateLocalKey(t testing.TB, name string) string {
	t.Helper()
	if err := kms.CreateLocalKey(e.KMSDir, name); err != nil {
		t.Fatal(err)
	}
	return "local-kms://" + name
}

// NewKey creates an API key of the default org with role.
func (e *Env) NewKey(t testing.TB, role orgs.Role) (orgs.APIKey, string) {
	t.Helper()
	orgID := e.DefaultOrg.ID
	if role == orgs.RoleOperator {
		orgID = ""
	}
	k, secret, err := e.Store.CreateAPIKey(context.Background(), orgID, role, string(role)+" for tests")
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

// SetStoredBytes sets what OrgStats reports for the org.
func (e *Env) SetStoredBytes(orgID string, n int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.storedBytes[orgID] = n
}

// recordingObjects is the storage fake; it records which orgs had all
// their objects deleted.
type recordingObjects struct {
	*memory.Store
	env *Env
}

func (r *recordingObjects) DeletePartition(ctx context.Context, p cas.Partition) (int64, error) {
	r.env.mu.Lock()
	r.env.deleted = append(r.env.deleted, string(p))
	r.env.mu.Unlock()
	return r.Store.DeletePartition(ctx, p)
}

// DeletedOrgData lists the org partitions whose objects were all deleted
// (enabling or disabling CMEK, deleting the org), in order.
func (e *Env) DeletedOrgData() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.deleted...)
}

// H2CClient is an HTTP client that speaks HTTP/2 without TLS, as gRPC needs.
func H2CClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

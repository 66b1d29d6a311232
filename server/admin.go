package server

import (
	"encoding/json"
	"net"
	"net/http"

	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/server/adminapi"
	"github.com/sealcache/sealcache/server/credentials"
	"github.com/sealcache/sealcache/server/webui"
)

// registerAdmin mounts the admin API (gRPC, gRPC-Web and JSON on one
// handler), the org settings page and the operator's shred check.
func (s *Server) registerAdmin(mux *http.ServeMux, grpcAddr net.Addr, tls bool) {
	_, grpcPort, _ := net.SplitHostPort(grpcAddr.String())
	api, err := adminapi.New(adminapi.Deps{
		Metadata:           s.orgs,
		Auth:               s.auth,
		Encryption:         s.storage.manager,
		KeyRecords:         s.orgs,
		OrgStats:           s.orgStats,
		Providers:          []string{kms.ProviderGCP, kms.ProviderAWS, kms.ProviderLocal},
		OperatorPrincipals: s.operatorPrincipals(),
		KeyCacheTTL:        s.cfg.KeyCacheTTL,
		RemoteCacheURL:     s.cfg.PublicCacheURL,
		GRPCPort:           grpcPort,
		GRPCTLS:            tls,
		Logger:             s.log,
	})
	if err != nil {
		panic(err) // Deps are complete by construction
	}
	api.Register(mux)
	ui := webui.Handler()
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET /ui/", ui)
	mux.HandleFunc("GET /v1/shred-check", s.serveShredCheck)
}

func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not found: the cache protocol uses /cas/HASH and /ac/HASH; the settings page is at /", http.StatusNotFound)
}

// serveShredCheck answers GET /v1/shred-check?org_id=ID for operator keys:
// it tries to open every stored object of the org and reports the counts.
func (s *Server) serveShredCheck(w http.ResponseWriter, r *http.Request) {
	p, err := s.authenticate(r.Context(), credentials.FromHTTP(r))
	if err != nil {
		httpError(w, err)
		return
	}
	if p.Role != orgs.RoleOperator {
		http.Error(w, "the shred check needs the operator key", http.StatusForbidden)
		return
	}
	orgID := r.URL.Query().Get("org_id")
	if orgID == "" {
		http.Error(w, "org_id: give the id of the org to check (sealcache admin orgs list)", http.StatusBadRequest)
		return
	}
	_, orgErr := s.orgs.GetOrg(r.Context(), orgID)
	report, err := s.ShredCheck(r.Context(), orgID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	leftovers, err := s.orgs.LeftoverKeyMaterial(r.Context(), orgID)
	if err != nil {
		http.Error(w, "searching the metadata store for deleted key material: "+err.Error(), http.StatusInternalServerError)
		return
	}
	resp := ShredCheckResponse{
		OrgID: report.OrgID, OrgExists: orgErr == nil, Objects: report.Objects, Plain: report.Plain, Sealed: report.Sealed,
		Opened: report.Opened, KeyError: report.KeyError,
		Shredded: report.Shredded() && len(leftovers) == 0,
	}
	for _, f := range leftovers {
		resp.KeyMaterialLeft = append(resp.KeyMaterialLeft, KeyMaterialFinding{
			KeyID: f.KeyID, Half: f.Half, Where: f.Where, Offset: f.Offset, Copies: f.Copies, Problem: f.Problem,
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// ShredCheckResponse is the JSON answer of GET /v1/shred-check. Shredded
// holds when no stored object sealed under a deleted key opens and no copy
// of a deleted key's wrapped halves is left in the metadata store.
type ShredCheckResponse struct {
	OrgID     string `json:"org_id"`
	OrgExists bool   `json:"org_exists"` // false for a deleted (or mistyped) org id
	Objects   int64  `json:"objects"`
	Plain     int64  `json:"plain"`
	Sealed    int64  `json:"sealed"`
	Opened    int64  `json:"opened"`
	Shredded  bool   `json:"shredded"`
	KeyError  string `json:"key_error,omitempty"`
	// KeyMaterialLeft lists copies of deleted wrapped key halves found in
	// the metadata store's files (SQLite) or live rows (PostgreSQL).
	KeyMaterialLeft []KeyMaterialFinding `json:"key_material_left,omitempty"`
}

// KeyMaterialFinding is one place where a deleted wrapped key half was found.
type KeyMaterialFinding struct {
	KeyID   string `json:"key_id"`
	Half    string `json:"half"` // customer or operator
	Where   string `json:"where"`
	Offset  int64  `json:"offset"` // -1 when Where is no file
	Copies  int    `json:"copies"`
	Problem string `json:"problem"`
}

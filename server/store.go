package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/sealcache/sealcache/cas/disk"
	"github.com/sealcache/sealcache/cas/verify"
)

// cmek holds the CMEK parts of a running server.
type cmek struct{}

// openStore composes the storage stack, outermost first:
//
//	verify (hash checks for plain CAS blobs)
//	  disk (files under --data_dir, LRU within --max_size)
func (s *Server) openStore(ctx context.Context) error {
	d, err := disk.Open(filepath.Join(s.cfg.DataDir, "cas"), s.cfg.MaxSize, s.log)
	if err != nil {
		return fmt.Errorf("opening the disk store: %w", err)
	}
	s.closers = append(s.closers, d.Close)
	s.registry.MustRegister(newStoreCollector(func() (int64, int64, uint64) {
		st := d.Stats()
		return st.UsedBytes, st.Objects, st.Evictions
	}))
	s.backend = d
	s.store = verify.New(d, s.log)
	return nil
}

func (s *Server) startBackground(ctx context.Context) {}

func (s *Server) registerAdmin(mux *http.ServeMux) {}

func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	http.NotFound(w, r)
}

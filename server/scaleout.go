package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sealcache/sealcache/cas/s3"
	"github.com/sealcache/sealcache/orgs"
)

// Settings and start-up of many nodes sharing one bucket (--blob_store)
// and one PostgreSQL (--metadata_url); the storage they compose is in
// backend.go, the changes they tell each other in orgchanges.go.

// validateScaleout checks the settings of many nodes.
func (c *Config) validateScaleout() error {
	if c.MetadataURL != "" && !strings.HasPrefix(c.MetadataURL, "postgres://") && !strings.HasPrefix(c.MetadataURL, "postgresql://") {
		return errors.New("--metadata_url: use a PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	if c.BlobStore == "" {
		// A slice, not a map: the error names the first such flag, the same
		// one on every run.
		for _, f := range []struct {
			flag string
			set  bool
		}{
			{"--s3_endpoint", c.S3Endpoint != ""}, {"--s3_region", c.S3Region != ""}, {"--s3_path_style", c.S3PathStyle},
			{"--s3_access_key_id", c.S3AccessKeyID != ""}, {"--s3_secret_access_key", c.S3SecretAccessKey != ""},
			{"--shared_max_size", c.SharedMaxSize != 0}, {"--shared_org_quota", c.SharedOrgQuota != 0},
		} {
			if f.set {
				return fmt.Errorf("%s configures the shared object store, which is off: give --blob_store s3://BUCKET/PREFIX too, or drop %s", f.flag, f.flag)
			}
		}
		return nil
	}
	if c.MetadataURL == "" {
		return errors.New("--blob_store needs --metadata_url postgres://...: the index of the shared objects lives in PostgreSQL, shared by every node")
	}
	if _, err := s3.ParseURL(c.BlobStore); err != nil {
		return fmt.Errorf("--blob_store: %w", err)
	}
	if c.MinRetention <= 0 {
		return fmt.Errorf("--min_retention=%s: must be above 0, such as 1h", c.MinRetention)
	}
	if c.SharedMaxSize < 0 || c.SharedOrgQuota < 0 {
		return errors.New("--shared_max_size and --shared_org_quota must not be negative")
	}
	return nil
}

// openMetadataStore opens PostgreSQL when --metadata_url names it (many
// nodes share it), else SQLite in the data directory.
func (s *Server) openMetadataStore(ctx context.Context) (*orgs.DB, error) {
	if s.cfg.MetadataURL != "" {
		return orgs.OpenPostgres(ctx, s.cfg.MetadataURL)
	}
	return orgs.OpenSQLite(filepath.Join(s.cfg.DataDir, "metadata.db"))
}

// startOrgChanges applies changes made through other nodes (orgchanges.go)
// as the metadata store's change feed delivers them.
func (s *Server) startOrgChanges(ctx context.Context) {
	go s.storage.changes.run(ctx)
	go func() {
		if err := s.orgs.Watch(ctx, s.storage.changes.notify); err != nil && ctx.Err() == nil {
			s.log.Warn("watching the metadata store for changes stopped", "err", err)
		}
	}()
}

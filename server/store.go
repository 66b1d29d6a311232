package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/completeness"
	"github.com/sealcache/sealcache/cas/emptyblob"
	"github.com/sealcache/sealcache/cas/fence"
	"github.com/sealcache/sealcache/cas/lookups"
	"github.com/sealcache/sealcache/cas/verify"
	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/encryption/kms"
)

// storage is the composed storage stack and the parts of it the admin
// side needs. Every request goes through blobs; nothing here names a
// concrete backend except openBackend.
type storage struct {
	blobs   cas.BlobStore    // the whole stack, outermost first (see openStorage)
	lookups *lookups.Counter // hits and misses per org, for the Overview
	backend cas.Backend      // the bottom: partitions and usage figures
	keys    *encryption.KeyProvider
	manager *encryption.Manager
	nodes   *nodes      // many nodes: the shared store and its evictor; nil for one node
	changes *orgChanges // a shared metadata store: changes made through other nodes; nil for SQLite
}

// openStorage composes the storage stack, outermost first:
//
//	lookups        counts hits and misses (what clients see)
//	completeness   an ActionResult is a hit only while its outputs exist
//	emptyblob      the empty CAS blob is always present
//	fence          uploads that span an enable, disable or org deletion publish nothing
//	encryption     routes by org: CMEK off -> plain path; on -> sealed path
//	  plain:  verify (CAS digests, AC checksums) -> backend
//	  sealed: backend (sealed chunks authenticate themselves)
//	backend        openBackend: the disk store under --data_dir, alone or as
//	               a tier in front of the shared store (--blob_store)
func (s *Server) openStorage(ctx context.Context) error {
	backend, nodes, err := s.openBackend(ctx)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, backend.Close)

	keys, opener, err := s.openKeyProvider()
	if err != nil {
		return err
	}
	sealing := encryption.NewSealingStore(verify.New(backend, s.log), backend, keys, s.log)
	fenced := fence.New(sealing)
	manager, err := encryption.NewManager(encryption.ManagerConfig{
		Records:            s.orgs,
		OpenKMS:            opener.Open,
		Auditor:            s.orgs,
		Keys:               keys,
		OperatorKeyURI:     s.cfg.OperatorKeyURI,
		OperatorPrincipals: s.operatorPrincipals(),
		Objects:            backend,
		Fence:              fenced,
		Now:                s.cfg.Clock,
	})
	if err != nil {
		return err
	}
	counted := lookups.New(completeness.New(emptyblob.New(fenced), completeness.DefaultLimits), s.registry)
	s.storage = &storage{blobs: counted, lookups: counted, backend: backend, keys: keys, manager: manager, nodes: nodes}
	if s.cfg.MetadataURL != "" {
		stores := []objectStore{backend}
		if nodes != nil {
			stores = []objectStore{nodes.local, nodes.shared}
		}
		s.storage.changes = newOrgChanges(s.log, s.orgs, keys, fenced, stores...)
		if err := s.storage.changes.load(ctx); err != nil {
			return err
		}
	}
	return nil
}

// openKeyProvider opens the KMS clients and this node's derived-key cache.
func (s *Server) openKeyProvider() (*encryption.KeyProvider, *kms.Opener, error) {
	opener := kms.NewOpener(kms.Config{
		LocalDir:           s.cfg.LocalKMSDir,
		GCPEndpoint:        s.cfg.GCPKMSEndpoint,
		GCPInsecure:        s.cfg.GCPKMSInsecure,
		GCPCredentialsFile: s.cfg.GCPCredentialsFile,
		AWSEndpoint:        s.cfg.AWSKMSEndpoint,
		AWSRegion:          s.cfg.AWSRegion,
		AWSAccessKeyID:     s.cfg.AWSAccessKeyID,
		AWSSecretAccessKey: s.cfg.AWSSecretAccessKey,
	})
	s.closers = append(s.closers, opener.Close)
	if name, ok := strings.CutPrefix(s.cfg.OperatorKeyURI, "local-kms://"); ok {
		created, err := kms.EnsureLocalKey(s.cfg.LocalKMSDir, name)
		if err != nil {
			return nil, nil, fmt.Errorf("--operator_key_uri %s: %w", s.cfg.OperatorKeyURI, err)
		}
		if created {
			s.log.Info("created the local operator key", "uri", s.cfg.OperatorKeyURI, "dir", s.cfg.LocalKMSDir)
		}
	}
	keys, err := encryption.NewKeyProvider(encryption.KeyProviderConfig{
		Records: s.orgs,
		OpenKMS: opener.Open,
		Auditor: s.orgs,
		Logger:  s.log,
		TTL:     s.cfg.KeyCacheTTL,
		Now:     s.cfg.Clock,
	})
	if err != nil {
		return nil, nil, err
	}
	s.closers = append(s.closers, func() error { keys.Close(); return nil })
	return keys, opener, nil
}

// operatorPrincipals are the identities customers grant on their keys.
func (s *Server) operatorPrincipals() map[string]string {
	p := map[string]string{}
	if s.cfg.GCPKMSPrincipal != "" {
		p[kms.ProviderGCP] = s.cfg.GCPKMSPrincipal
	}
	if s.cfg.AWSKMSPrincipal != "" {
		p[kms.ProviderAWS] = s.cfg.AWSKMSPrincipal
	}
	return p
}

func (s *Server) startBackground(ctx context.Context) {
	go s.storage.manager.RunRewrapLoop(ctx, s.cfg.KeyRewrapInterval)
	if s.storage.nodes != nil {
		s.storage.nodes.start(ctx)
	}
	if s.storage.changes != nil {
		s.startOrgChanges(ctx)
	}
}

// ShredCheck tries to open every stored object of an org.
func (s *Server) ShredCheck(ctx context.Context, orgID string) (encryption.ShredReport, error) {
	return encryption.ShredCheck(ctx, s.storage.backend, s.storage.backend, s.storage.keys, orgID)
}

// orgStats is what the Overview shows: stored bytes, hits and misses.
func (s *Server) orgStats(ctx context.Context, orgID string) (int64, uint64, uint64) {
	hits, misses := s.storage.lookups.Org(orgID)
	used, err := s.storage.backend.OrgUsage(ctx, orgID)
	if err != nil {
		s.log.Warn("reading an org's stored bytes failed", "org", orgID, "err", err)
	}
	return used, hits, misses
}

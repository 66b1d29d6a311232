package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/disk"
	"github.com/sealcache/sealcache/cas/verify"
	"github.com/sealcache/sealcache/encryption"
	"github.com/sealcache/sealcache/encryption/kms"
)

// cmek holds the CMEK parts of a running server.
type cmek struct {
	keys    *encryption.KeyProvider
	manager *encryption.Manager
}

// openStore composes the storage stack, outermost first:
//
//	encryption   routes by org: CMEK off -> plain path; on -> sealed path
//	  plain:  verify (hash checks)  ->  disk
//	  sealed: disk (sealed chunks authenticate themselves)
//	disk         files under --data_dir, LRU within --max_size
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
	s.disk = d

	c, err := s.openCMEK(ctx)
	if err != nil {
		return err
	}
	s.cmek = c
	s.store = encryption.NewStore(verify.New(d, s.log), d, c.keys)
	return nil
}

func (s *Server) openCMEK(ctx context.Context) (*cmek, error) {
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
			return nil, fmt.Errorf("--operator_key_uri %s: %w", s.cfg.OperatorKeyURI, err)
		}
		if created {
			s.log.Info("created the local operator key", "uri", s.cfg.OperatorKeyURI, "dir", s.cfg.LocalKMSDir)
		}
	}
	keys, err := encryption.NewKeyProvider(encryption.KeyProviderConfig{
		Records: s.orgs,
		OpenKMS: opener.Open,
		Auditor: s.orgs,
		TTL:     s.cfg.KeyCacheTTL,
		Now:     s.cfg.Clock,
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() error { keys.Close(); return nil })
	manager, err := encryption.NewManager(encryption.ManagerConfig{
		Records:            s.orgs,
		OpenKMS:            opener.Open,
		Auditor:            s.orgs,
		Keys:               keys,
		OperatorKeyURI:     s.cfg.OperatorKeyURI,
		OperatorPrincipals: s.operatorPrincipals(),
		Now:                s.cfg.Clock,
	})
	if err != nil {
		return nil, err
	}
	return &cmek{keys: keys, manager: manager}, nil
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
	go s.cmek.manager.RunRewrapLoop(ctx, s.cfg.KeyRewrapInterval)
}

// deleteOrgData removes every stored object of an org, plain and sealed.
func (s *Server) deleteOrgData(ctx context.Context, orgID string) error {
	if orgID == "" || strings.Contains(orgID, "/") {
		return fmt.Errorf("refusing to delete the data of org id %q", orgID)
	}
	_, err := s.disk.DeletePartition(ctx, orgID)
	return err
}

// ShredCheck tries to open every stored object of an org.
func (s *Server) ShredCheck(ctx context.Context, orgID string) (encryption.ShredReport, error) {
	return encryption.ShredCheck(ctx, s.disk, s.disk, s.cmek.keys, orgID)
}

// cmekControl is the encryption lifecycle as the admin API sees it: the
// Manager's, plus one promise the Manager cannot keep alone because it does
// not know the storage. Once CMEK is on, no plaintext of the org stays on
// disk: enabling deletes the org's plain objects, so they can neither be
// read from disk nor come back as hits if CMEK is later disabled.
type cmekControl struct {
	*encryption.Manager
	s *Server
}

func (c cmekControl) Enable(ctx context.Context, orgID, actorKeyID, customerKeyURI string) (encryption.KeyRecord, error) {
	rec, err := c.Manager.Enable(ctx, orgID, actorKeyID, customerKeyURI)
	if err != nil {
		return rec, err
	}
	n, bytes, err := c.s.deletePlainObjects(context.WithoutCancel(ctx), orgID)
	if err != nil {
		c.s.log.Error("CMEK enabled, but deleting the org's plain objects failed; they age out of the LRU", "org", orgID, "err", err)
		_ = c.s.orgs.Audit(ctx, orgID, "system", "plain_data_delete_failed", err.Error())
	} else if n > 0 {
		_ = c.s.orgs.Audit(ctx, orgID, "system", "plain_data_deleted", fmt.Sprintf("objects=%d bytes=%d", n, bytes))
	}
	return rec, nil
}

// deletePlainObjects removes the objects stored directly in the org's
// partition (written while CMEK was off), leaving sealed partitions alone.
func (s *Server) deletePlainObjects(ctx context.Context, orgID string) (n int, bytes int64, err error) {
	var plain []cas.StoredObject
	err = s.disk.WalkPartition(ctx, orgID, func(o cas.StoredObject) error {
		if o.Key.Partition == orgID {
			plain = append(plain, o)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, o := range plain {
		if err := s.disk.Delete(ctx, o.Key); err != nil {
			return n, bytes, err
		}
		n++
		bytes += o.Size
	}
	return n, bytes, nil
}

package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sealcache/sealcache/cas"
)

// casKey is where a CAS blob of the caller's org lives. CAS content is
// shared by every instance name of one org.
func casKey(ctx context.Context, d cas.Digest) cas.Key {
	return cas.Key{Partition: cas.Partition(principalFrom(ctx).OrgID), Kind: cas.KindCAS, Digest: d}
}

// acKey is where an action result lives: per org and per instance name,
// because results differ per platform.
func acKey(ctx context.Context, instance string, d cas.Digest) cas.Key {
	return cas.Key{Partition: cas.Partition(principalFrom(ctx).OrgID), Kind: cas.KindAC, Instance: instance, Digest: d}
}

// maxInstanceNameLength bounds REAPI instance names, which become part of
// stored object names.
const maxInstanceNameLength = 120

// checkInstanceName refuses instance names the store cannot name objects by.
func checkInstanceName(name string) error {
	if len(name) > maxInstanceNameLength {
		return status.Errorf(codes.InvalidArgument, "instance_name is %d bytes; use at most %d", len(name), maxInstanceNameLength)
	}
	return nil
}

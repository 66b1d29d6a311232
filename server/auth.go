package server

import (
	"context"
	"errors"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sealcache/sealcache/orgs"
	"github.com/sealcache/sealcache/server/credentials"
)

// principal is who is calling: the API key's id, its org and its role.
type principal struct {
	KeyID string
	OrgID string
	Role  orgs.Role
}

func (p principal) canRead() bool  { return p.Role.CanRead() }
func (p principal) canWrite() bool { return p.Role.CanWrite() }

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// Anonymous access modes for keyless clients (--anonymous_access).
const (
	AnonymousNone  = "none"
	AnonymousRead  = "read"
	AnonymousWrite = "write"
)

// access is what a method needs.
type access int

const (
	accessNone  access = iota // health checks: no key at all
	accessAny                 // any valid key (Capabilities)
	accessRead                // reader, writer, admin
	accessWrite               // writer, admin
)

// methodAccess lists every gRPC method the server registers and what it
// needs. A method missing here is refused for everyone: a new RPC must be
// given a rule before any key can call it (a test checks every registered
// method has one).
var methodAccess = map[string]access{
	"/build.bazel.remote.execution.v2.Capabilities/GetCapabilities": accessAny,

	"/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs": accessRead,
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs":   accessRead,
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/GetTree":          accessRead,
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs": accessWrite,
	// Blob splitting is not implemented (the embedded Unimplemented server
	// answers); the rules say who would get that answer.
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/SplitBlob":            accessRead,
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/GetChunkMapping":      accessRead,
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/SpliceBlob":           accessWrite,
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/RegisterChunkMapping": accessWrite,

	"/build.bazel.remote.execution.v2.ActionCache/GetActionResult":    accessRead,
	"/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult": accessWrite,

	"/google.bytestream.ByteStream/Read":             accessRead,
	"/google.bytestream.ByteStream/Write":            accessWrite,
	"/google.bytestream.ByteStream/QueryWriteStatus": accessWrite,

	// Remote Asset API: any reader finds assets; only writers make the
	// server download (checked in FetchBlob) or push mappings.
	"/build.bazel.remote.asset.v1.Fetch/FetchBlob":      accessRead,
	"/build.bazel.remote.asset.v1.Fetch/FetchDirectory": accessRead,
	"/build.bazel.remote.asset.v1.Push/PushBlob":        accessWrite,
	"/build.bazel.remote.asset.v1.Push/PushDirectory":   accessWrite,

	"/grpc.health.v1.Health/Check": accessNone,
	"/grpc.health.v1.Health/Watch": accessNone,
	"/grpc.health.v1.Health/List":  accessNone,
}

// authenticate finds the principal for an API key secret ("" for none).
// The answer is a status error ready to return to the client.
func (s *Server) authenticate(ctx context.Context, secret string) (principal, error) {
	if secret == "" {
		switch s.cfg.AnonymousAccess {
		case AnonymousRead:
			return principal{KeyID: "anonymous", OrgID: s.defaultOrgID, Role: orgs.RoleReader}, nil
		case AnonymousWrite:
			return principal{KeyID: "anonymous", OrgID: s.defaultOrgID, Role: orgs.RoleWriter}, nil
		}
		return principal{}, status.Error(codes.Unauthenticated, "no API key: pass it with --remote_header=x-api-key=KEY (gRPC), the x-api-key header, Authorization: Bearer KEY, or as the basic-auth password (HTTP)")
	}
	key, err := s.auth.Authenticate(ctx, secret)
	if err != nil {
		if errors.Is(err, orgs.ErrUnauthenticated) {
			return principal{}, status.Error(codes.Unauthenticated, "API key is not valid: it is unknown, revoked or mistyped; ask your org admin for a key")
		}
		return principal{}, status.Errorf(codes.Unavailable, "cannot check the API key now: %v", err)
	}
	return principal{KeyID: key.ID, OrgID: key.OrgID, Role: key.Role}, nil
}

// authorize checks that p may do what the method needs.
func authorize(p principal, need access, what string) error {
	switch need {
	case accessNone, accessAny:
		return nil
	}
	if p.Role == orgs.RoleOperator {
		return status.Errorf(codes.PermissionDenied, "operator keys cannot %s of any org; use an API key of the org", verb(need))
	}
	if need == accessRead && !p.canRead() || need == accessWrite && !p.canWrite() {
		return status.Errorf(codes.PermissionDenied, "API key %s has role %s, which may not %s (%s); ask an org admin for a writer key", p.KeyID, p.Role, verb(need), what)
	}
	return nil
}

func verb(a access) string {
	if a == accessWrite {
		return "write to the cache"
	}
	return "read the cache"
}

func (s *Server) grpcPrincipal(ctx context.Context, fullMethod string) (context.Context, error) {
	need, listed := methodAccess[fullMethod]
	if !listed {
		return ctx, status.Errorf(codes.PermissionDenied, "method %s has no access rule on this server; it is refused for every key", fullMethod)
	}
	if need == accessNone {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	p, err := s.authenticate(ctx, credentials.FromGRPC(md))
	if err != nil {
		return ctx, err
	}
	if err := authorize(p, need, fullMethod[strings.LastIndex(fullMethod, "/")+1:]); err != nil {
		return ctx, err
	}
	return withPrincipal(ctx, p), nil
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.grpcPrincipal(ctx, info.FullMethod)
	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}
	s.countGRPC(info.FullMethod, err)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.grpcPrincipal(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, &principalStream{ServerStream: ss, ctx: ctx})
	}
	s.countGRPC(info.FullMethod, err)
	return err
}

func (s *Server) countGRPC(fullMethod string, err error) {
	service, method := "", fullMethod
	if i := strings.LastIndex(fullMethod, "/"); i > 0 {
		service, method = fullMethod[1:i], fullMethod[i+1:]
	}
	if j := strings.LastIndex(service, "."); j >= 0 {
		service = service[j+1:]
	}
	s.metrics.requests.WithLabelValues("grpc", service, method, status.Code(err).String()).Inc()
	s.refusals.observeGRPC(fullMethod, err)
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (p *principalStream) Context() context.Context { return p.ctx }

const requestMetadataHeader = "build.bazel.remote.execution.v2.requestmetadata-bin"

// isOldBazel reports whether the client is Bazel before 6.0, which fails
// the build when Capabilities says update_enabled=false. Bazel names itself
// in the RequestMetadata header; development builds (as Debian ships) carry
// no usable version and are treated as old, which only costs them refused
// uploads.
func isOldBazel(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, raw := range md.Get(requestMetadataHeader) {
		rm := &repb.RequestMetadata{}
		if proto.Unmarshal([]byte(raw), rm) != nil || rm.GetToolDetails().GetToolName() != "bazel" {
			continue
		}
		major, err := strconv.Atoi(strings.SplitN(rm.GetToolDetails().GetToolVersion(), ".", 2)[0])
		return err != nil || major < 6
	}
	for _, ua := range md.Get("user-agent") {
		// Bazel 4 and 5 ship grpc-java 1.3x-1.4x; 6.0 moved to 1.48.
		if v, ok := strings.CutPrefix(ua, "grpc-java-netty/1."); ok {
			minor, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
			return err == nil && minor < 48
		}
	}
	return false
}

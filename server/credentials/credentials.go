// Package credentials finds the API key a client sent, in every form Bazel
// and scripts use, for gRPC and HTTP alike.
package credentials

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
)

// HeaderAPIKey is the header Bazel sends with --remote_header=x-api-key=KEY.
const HeaderAPIKey = "x-api-key"

// FromHTTP returns the API key of an HTTP request: the x-api-key header,
// an "Authorization: Bearer KEY" header, or basic auth with the key as the
// password (Bazel: --remote_cache=http://user:KEY@host:8080). "" if none.
func FromHTTP(r *http.Request) string {
	if k := r.Header.Get(HeaderAPIKey); k != "" {
		return strings.TrimSpace(k)
	}
	if k, ok := bearer(r.Header.Get("Authorization")); ok {
		return k
	}
	if _, password, ok := r.BasicAuth(); ok {
		return password
	}
	return ""
}

// FromGRPC returns the API key in incoming gRPC metadata: x-api-key or
// "authorization: Bearer KEY". "" if none.
func FromGRPC(md metadata.MD) string {
	if v := md.Get(HeaderAPIKey); len(v) > 0 && v[0] != "" {
		return strings.TrimSpace(v[0])
	}
	for _, v := range md.Get("authorization") {
		if k, ok := bearer(v); ok {
			return k
		}
	}
	return ""
}

func bearer(header string) (string, bool) {
	const prefix = "bearer "
	if len(header) > len(prefix) && strings.EqualFold(header[:len(prefix)], prefix) {
		return strings.TrimSpace(header[len(prefix):]), true
	}
	return "", false
}

// PerRPC sends key as x-api-key on every call of a gRPC client, as Bazel's
// --remote_header=x-api-key=KEY does; an empty key sends nothing. It works
// over plaintext connections too, like Bazel's grpc://.
type PerRPC string

func (k PerRPC) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if k == "" {
		return nil, nil
	}
	return map[string]string{HeaderAPIKey: string(k)}, nil
}

func (PerRPC) RequireTransportSecurity() bool { return false }

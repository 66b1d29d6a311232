package server

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sealcache/sealcache/cas"
)

// This file is the downloading half of the Remote Asset API (grpc_asset.go
// is the service): it fetches one URI from its origin under the operator's
// policy, spools it to a temporary file while hashing it, and checks the
// client's checksums before anything is stored.

// Asset fetch modes (--asset_fetch).
const (
	AssetFetchOn  = "on"
	AssetFetchOff = "off"
)

// Bounds of one download besides --asset_fetch_timeout and the size limit.
const (
	assetDialTimeout     = 30 * time.Second
	assetHeaderTimeout   = time.Minute // from request sent to response headers
	assetMaxRedirects    = 10
	assetUserAgent       = "Sealcache-remote-asset/1"
	assetSpoolDirName    = "asset-downloads" // below --data_dir
	assetMaxHeaderLength = 64 << 10
)

// originError is the origin's answer or a policy refusal for one URI: the
// Remote Asset API returns these inline in the response's status, not as
// the RPC's error, because they are outside the server's control.
type originError struct {
	code codes.Code
	msg  string
}

func (e *originError) Error() string { return e.msg }

func originErrorf(code codes.Code, format string, args ...any) *originError {
	return &originError{code: code, msg: fmt.Sprintf(format, args...)}
}

// hostPolicy decides which origins the server may download from.
//
// With no allowed hosts, any host may be fetched as long as every address
// the server connects to is public: loopback, private, link-local, CGNAT
// and multicast addresses are refused at connect time (so a DNS name that
// later resolves to an internal address is refused too). This keeps a
// tenant from using the server to reach its own network.
//
// With allowed hosts, only those may be fetched (exact names or
// "*.example.com" for the subdomains of example.com), and at any address:
// the operator named them on purpose, e.g. 127.0.0.1 for a local mirror.
type hostPolicy struct {
	allowed []string // lowercase; "*.suffix" or an exact host
}

func (p hostPolicy) allowAnyPublicHost() bool { return len(p.allowed) == 0 }

// checkURL refuses URLs the server never fetches, before any connection.
func (p hostPolicy) checkURL(u *url.URL) *originError {
	if u.Scheme != "http" && u.Scheme != "https" {
		return originErrorf(codes.NotFound, "%s was not pushed, and only http and https URLs are downloaded", redactURL(u))
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return originErrorf(codes.PermissionDenied, "%s has no host", redactURL(u))
	}
	if p.allowAnyPublicHost() {
		return nil
	}
	for _, a := range p.allowed {
		if host == a || strings.HasPrefix(a, "*.") && strings.HasSuffix(host, a[1:]) {
			return nil
		}
	}
	return originErrorf(codes.PermissionDenied, "host %s is not one this server downloads from (--asset_fetch_allowed_hosts); ask the operator to allow it, or push the blob with PushBlob", host)
}

// checkAddress runs for every connection, with the resolved address.
func (p hostPolicy) checkAddress(address string) error {
	if !p.allowAnyPublicHost() {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("unexpected address %q: %w", address, err)
	}
	if !isPublicAddr(ap.Addr()) {
		return &disallowedAddressError{addr: ap.Addr()}
	}
	return nil
}

type disallowedAddressError struct{ addr netip.Addr }

func (e *disallowedAddressError) Error() string {
	return fmt.Sprintf("address %s is not a public address; the server downloads only from public addresses unless the operator lists the host in --asset_fetch_allowed_hosts", e.addr)
}

var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"), // documentation
}

func isPublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	// IPv6 addresses that carry an IPv4 address for a gateway to reach
	// (NAT64's well-known prefix, 6to4) are as public as that address: a
	// NAT64 gateway may well reach 10.0.0.0/8 or 169.254.169.254.
	if v4, ok := embeddedIPv4(a); ok {
		return isPublicAddr(v4)
	}
	return true
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// embeddedIPv4 is the IPv4 address a NAT64 (64:ff9b::a.b.c.d) or 6to4
// (2002:AABB:CCDD::) address stands for.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// ParseHostList reads --asset_fetch_allowed_hosts: host names or IP
// addresses separated by commas or spaces ("*.example.com" allows the
// subdomains of example.com). Brackets around the list or an IPv6 address
// are accepted, so a YAML list works too.
func ParseHostList(s string) ([]string, error) {
	var hosts []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		h := strings.ToLower(strings.Trim(f, "[]"))
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/:@?#") && net.ParseIP(h) == nil {
			return nil, fmt.Errorf("%q is not a host name: give names such as example.com or *.example.com, or IP addresses, without scheme, port or path", f)
		}
		if strings.Contains(h, "*") && (!strings.HasPrefix(h, "*.") || strings.Count(h, "*") > 1 || len(h) < 4) {
			return nil, fmt.Errorf("%q: a wildcard must be a leading \"*.\", as in *.example.com", f)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// redactURL is a URL safe for logs and messages: no user info, no query.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "…"
	}
	c.Fragment = ""
	return c.String()
}

// sriChecksum is one checksum of a checksum.sri qualifier: a Subresource
// Integrity hash such as "sha256-BASE64".
type sriChecksum struct {
	alg  string // sha256, sha384 or sha512
	want []byte
}

// sriAlgorithms are the SRI hash algorithms the server checks.
var sriAlgorithms = map[string]func() hash.Hash{"sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}

// parseSRI reads a checksum.sri value: whitespace-separated hashes, of
// which the content must match at least one. Algorithms other than sha256,
// sha384 and sha512 are skipped, as SRI says; a value with none of those
// is an error.
func parseSRI(value string) ([]sriChecksum, error) {
	var sums []sriChecksum
	for _, tok := range strings.Fields(value) {
		alg, b64, ok := strings.Cut(tok, "-")
		if !ok {
			return nil, fmt.Errorf("%q is not ALGORITHM-BASE64", tok)
		}
		b64, _, _ = strings.Cut(b64, "?") // SRI options are ignored
		newHash := sriAlgorithms[alg]
		if newHash == nil {
			continue
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sum) != newHash().Size() {
			return nil, fmt.Errorf("%q is not a base64 %s hash", tok, alg)
		}
		sums = append(sums, sriChecksum{alg: alg, want: sum})
	}
	if len(sums) == 0 {
		return nil, fmt.Errorf("%q has no sha256, sha384 or sha512 hash", value)
	}
	return sums, nil
}

func sriString(alg string, sum []byte) string {
	return alg + "-" + base64.StdEncoding.EncodeToString(sum)
}

// assetDownloader fetches URIs for FetchBlob.
type assetDownloader struct {
	policy   hostPolicy
	client   *http.Client
	timeout  time.Duration // --asset_fetch_timeout
	maxBytes int64         // the largest blob the store takes
	sizeFlag string        // the flag that sets maxBytes, for messages
	spoolDir string
	log      *slog.Logger
}

func newAssetDownloader(cfg Config, log *slog.Logger) *assetDownloader {
	d := &assetDownloader{
		policy:   hostPolicy{allowed: lowercase(cfg.AssetFetchAllowedHosts)},
		timeout:  cfg.AssetFetchTimeout,
		maxBytes: cfg.BlobLimit().Bytes,
		sizeFlag: cfg.BlobLimit().Flag,
		spoolDir: filepath.Join(cfg.DataDir, assetSpoolDirName),
		log:      log,
	}
	dialer := &net.Dialer{
		Timeout: assetDialTimeout,
		// Control sees the resolved address of every connection, including
		// those of redirects, so no name can smuggle in an internal address.
		Control: func(network, address string, _ syscall.RawConn) error { return d.policy.checkAddress(address) },
	}
	transport := &http.Transport{
		Proxy:                  nil, // direct: the address policy must see the origin's address
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    assetDialTimeout,
		ResponseHeaderTimeout:  assetHeaderTimeout,
		MaxResponseHeaderBytes: assetMaxHeaderLength,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConnsPerHost:    2,
	}
	d.client = &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= assetMaxRedirects {
				return originErrorf(codes.NotFound, "more than %d redirects", assetMaxRedirects)
			}
			if err := d.policy.checkURL(req.URL); err != nil {
				return originErrorf(err.code, "redirected to %s: %s", redactURL(req.URL), err.msg)
			}
			return nil
		},
	}
	return d
}

// spooled is a downloaded blob in a temporary file, hashed and checked.
type spooled struct {
	file   *os.File
	digest cas.Digest
}

// Close removes the temporary file.
func (s *spooled) Close() error {
	s.file.Close()
	return os.Remove(s.file.Name())
}

// download fetches uri into a temporary file, hashing it with fn and with
// the checksums' algorithms, and checks the checksums (none to check when
// sums is empty). An *originError is the origin's or the policy's answer;
// other errors are the server's own trouble.
func (d *assetDownloader) download(ctx context.Context, u *url.URL, header http.Header, fn cas.DigestFunction, sums []sriChecksum, timeout time.Duration) (*spooled, error) {
	if err := d.policy.checkURL(u); err != nil {
		return nil, err
	}
	if timeout <= 0 || timeout > d.timeout {
		timeout = d.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, originErrorf(codes.InvalidArgument, "%s: %v", redactURL(u), err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set("User-Agent", assetUserAgent)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, d.requestError(ctx, u, err, timeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, originErrorf(originCode(resp.StatusCode), "%s answered %s", redactURL(u), resp.Status)
	}
	if resp.ContentLength > d.maxBytes {
		return nil, originErrorf(codes.InvalidArgument, "%s has %d bytes, more than this server stores in one blob (%s=%d)", redactURL(u), resp.ContentLength, d.sizeFlag, d.maxBytes)
	}

	if err := os.MkdirAll(d.spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the download directory: %w", err)
	}
	f, err := os.CreateTemp(d.spoolDir, "fetch-*")
	if err != nil {
		return nil, fmt.Errorf("creating a download file: %w", err)
	}
	out := &spooled{file: f}
	ok := false
	defer func() {
		if !ok {
			out.Close()
		}
	}()
	digestHash, err := cas.NewHasher(fn)
	if err != nil {
		return nil, err
	}
	// One hash per algorithm the checksums use, in the order they first
	// appear (the order a mismatch reports them in).
	sriHashes := map[string]hash.Hash{}
	var algs []string
	writers := []io.Writer{f, digestHash}
	for _, s := range sums {
		if sriHashes[s.alg] == nil {
			sriHashes[s.alg] = sriAlgorithms[s.alg]()
			algs = append(algs, s.alg)
			writers = append(writers, sriHashes[s.alg])
		}
	}
	n, err := io.Copy(io.MultiWriter(writers...), io.LimitReader(resp.Body, d.maxBytes+1))
	if err != nil {
		return nil, d.requestError(ctx, u, err, timeout)
	}
	if n > d.maxBytes {
		return nil, originErrorf(codes.InvalidArgument, "%s has more than %d bytes, the most this server stores in one blob (%s)", redactURL(u), d.maxBytes, d.sizeFlag)
	}
	if len(sums) > 0 {
		matched := false
		for _, s := range sums {
			matched = matched || subtle.ConstantTimeCompare(sriHashes[s.alg].Sum(nil), s.want) == 1
		}
		if !matched {
			got := make([]string, len(algs))
			for i, alg := range algs {
				got[i] = sriString(alg, sriHashes[alg].Sum(nil))
			}
			want := make([]string, len(sums))
			for i, s := range sums {
				want[i] = sriString(s.alg, s.want)
			}
			return nil, originErrorf(codes.Aborted, "checksum mismatch: %s has %s, the request wants %s; nothing was stored",
				redactURL(u), strings.Join(got, " "), strings.Join(want, " "))
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	out.digest = cas.Digest{Function: fn, Hash: hex.EncodeToString(digestHash.Sum(nil)), Size: n}
	ok = true
	return out, nil
}

// requestError explains why a request to the origin failed.
func (d *assetDownloader) requestError(ctx context.Context, u *url.URL, err error, timeout time.Duration) error {
	var oe *originError
	var dae *disallowedAddressError
	switch {
	case errors.As(err, &oe):
		return oe
	case errors.As(err, &dae):
		return originErrorf(codes.PermissionDenied, "%s: %v", redactURL(u), dae)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return originErrorf(codes.DeadlineExceeded, "downloading %s did not finish within %s (the request's timeout, at most --asset_fetch_timeout)", redactURL(u), timeout)
	case errors.Is(err, context.Canceled):
		return err
	}
	return originErrorf(codes.Unavailable, "cannot download %s: %v", redactURL(u), unwrapURLError(err))
}

// unwrapURLError drops the "Get URL:" prefix net/http adds, since the
// message names the URL already (without its secrets).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// originCode maps an origin's HTTP status to the inline status code.
func originCode(status int) codes.Code {
	switch {
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return codes.PermissionDenied
	case status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case status >= 500:
		return codes.Unavailable
	}
	return codes.NotFound
}

// validateAssetFetch checks the Remote Asset settings of a Config.
func (c *Config) validateAssetFetch() error {
	switch c.AssetFetch {
	case AssetFetchOn, AssetFetchOff:
	default:
		return fmt.Errorf("--asset_fetch=%q: use on or off", c.AssetFetch)
	}
	if c.AssetFetchTimeout <= 0 {
		return fmt.Errorf("--asset_fetch_timeout=%s: must be positive, such as 5m", c.AssetFetchTimeout)
	}
	for _, h := range c.AssetFetchAllowedHosts {
		if _, err := ParseHostList(h); err != nil {
			return fmt.Errorf("--asset_fetch_allowed_hosts: %w", err)
		}
	}
	return nil
}

func lowercase(hosts []string) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = strings.ToLower(strings.Trim(h, "[]"))
	}
	return out
}

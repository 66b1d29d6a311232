// Package server wires Sealcache together: the REAPI gRPC services (one
// file per service), Bazel's HTTP cache protocol, authentication, the admin
// API and the org settings page, over a cas.BlobStore composed at start-up.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sealcache/sealcache/orgs"
)

// Server is one running Sealcache node.
type Server struct {
	cfg          Config
	log          *slog.Logger
	storage      *storage // the composed storage stack, see store.go
	orgs         *orgs.DB
	auth         *orgs.Authenticator
	defaultOrgID string
	metrics      *metrics
	registry     *prometheus.Registry
	uploads      *uploadTable
	refusals     *refusalLog  // refused and failed requests, rate-limited
	evictions    *evictionLog // evictions under pressure, summed up
	closers      []func() error

	// firstStart holds the keys a first start created until both ports
	// serve; ServeListeners prints them (see announceInitialKeys).
	firstStart *orgs.BootstrapResult
	bannerOut  io.Writer
}

// Run starts the server and blocks until ctx ends, then shuts down:
// in-flight requests get cfg.ShutdownGrace to finish, unfinished uploads
// are dropped without publishing anything. out receives the one-time
// bootstrap message with the initial API keys.
//
// Both ports are bound first: when one is busy, Run fails before it
// creates the data directory, any key or any file.
func Run(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	grpcLis, httpLis, err := listenBoth(cfg)
	if err != nil {
		return err
	}
	s, err := New(ctx, cfg, log, out)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	defer s.Close()
	return s.ServeListeners(ctx, grpcLis, httpLis)
}

// New opens the data directory and composes the stores; it does not listen.
func New(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating --data_dir: %w", err)
	}
	s := &Server{cfg: cfg, log: log, registry: prometheus.NewRegistry(), bannerOut: out}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = newMetrics(s.registry)
	s.refusals = newRefusalLog(log, cfg.Clock)
	s.evictions = newEvictionLog(log, cfg.MaxSize, cfg.Clock)
	if err := s.openMetadata(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.openStorage(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases what New opened, in reverse order.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

func (s *Server) openMetadata(ctx context.Context) error {
	store, err := s.openMetadataStore(ctx)
	if err != nil {
		return fmt.Errorf("opening the metadata store: %w", err)
	}
	s.orgs = store
	s.closers = append(s.closers, store.Close)
	auth, err := orgs.NewAuthenticator(store, orgs.AuthConfig{CacheTTL: s.cfg.AuthCacheTTL})
	if err != nil {
		return err
	}
	s.auth = auth
	s.closers = append(s.closers, func() error { auth.Close(); return nil })
	boot, err := store.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("creating the default org: %w", err)
	}
	if boot.Created {
		if err := s.writeInitialKeys(boot); err != nil {
			return err
		}
	}
	def, err := store.GetOrgByName(ctx, "default")
	if err == nil {
		s.defaultOrgID = def.ID
	} else if s.cfg.AnonymousAccess != AnonymousNone {
		return fmt.Errorf("--anonymous_access=%s needs the org \"default\", which was deleted", s.cfg.AnonymousAccess)
	}
	return nil
}

// Names of the files that hold the initial keys, inside --data_dir.
const (
	InitialAdminKeyFile    = "initial-admin-api-key"
	InitialOperatorKeyFile = "initial-operator-api-key"
)

// writeInitialKeys writes the first keys to files only the server's user
// can read, and keeps them for announceInitialKeys.
func (s *Server) writeInitialKeys(boot orgs.BootstrapResult) error {
	for name, secret := range map[string]string{InitialAdminKeyFile: boot.AdminSecret, InitialOperatorKeyFile: boot.OperatorSecret} {
		if err := os.WriteFile(filepath.Join(s.cfg.DataDir, name), []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	s.firstStart = &boot
	return nil
}

// announceInitialKeys prints the first keys once, with the Bazel flags to
// paste, when both ports serve, so the flags name the ports really bound.
// The keys never go to the log.
func (s *Server) announceInitialKeys(grpcAddr, httpAddr net.Addr) {
	boot := s.firstStart
	if boot == nil || s.bannerOut == nil {
		return
	}
	s.firstStart = nil
	host := hostOf(s.cfg.GRPCAddress)
	fmt.Fprintf(s.bannerOut, `
Sealcache created the org "default" and its first keys. They are shown once.

  admin key of org "default":  %s
  operator key:                %s

They are also in %s and %s (mode 0600).
Build with the cache:

  bazel build --remote_cache=grpc://%s:%s --remote_header=x-api-key=%s //...

Create writer and reader keys for your team on the settings page at http://%s:%s/
or with: sealcache admin keys create --role writer --label ci --api_key ADMIN_KEY

`, boot.AdminSecret, boot.OperatorSecret,
		filepath.Join(s.cfg.DataDir, InitialAdminKeyFile), filepath.Join(s.cfg.DataDir, InitialOperatorKeyFile),
		host, portOf(grpcAddr.String()), boot.AdminSecret, hostOf(s.cfg.HTTPAddress), portOf(httpAddr.String()))
}

// hostOf is the host clients should use for a listen address: the address
// itself when it names one, else this machine's name.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		return host
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		return name
	}
	return "HOST"
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return "PORT"
	}
	return port
}

// ServeListeners serves on listeners the caller opened (tests use port 0).
func (s *Server) ServeListeners(ctx context.Context, grpcLis, httpLis net.Listener) error {
	var tlsConfig *tls.Config
	if s.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("loading TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	grpcLis = newLimitListener(grpcLis, "grpc", s.cfg.MaxConnectionsPerPort, s.log)
	httpLis = newLimitListener(httpLis, "http", s.cfg.MaxConnectionsPerPort, s.log)

	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	s.uploads = newUploadTable(runCtx, s.storage.blobs)
	s.startBackground(runCtx)
	go s.refusals.run(runCtx)
	go s.evictions.run(runCtx)

	grpcServer := s.newGRPCServer(tlsConfig)
	httpServer := &http.Server{
		Handler:           s.httpHandler(grpcLis.Addr(), tlsConfig != nil),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
		// A keep-alive connection waiting for its next request holds a
		// slot of --max_connections_per_port: give it back after a while.
		IdleTimeout: 5 * time.Minute,
	}
	// h2c lets gRPC clients of the admin API talk plaintext HTTP/2 here.
	httpServer.Protocols = new(http.Protocols)
	httpServer.Protocols.SetHTTP1(true)
	httpServer.Protocols.SetHTTP2(true)
	httpServer.Protocols.SetUnencryptedHTTP2(tlsConfig == nil)

	// HTTP/1 clients on the gRPC port are told where the HTTP port is.
	grpcLis = &grpcPortHint{Listener: grpcLis, httpPort: portOf(httpLis.Addr().String())}
	s.announceInitialKeys(grpcLis.Addr(), httpLis.Addr())
	errc := make(chan error, 2)
	go func() { errc <- grpcServer.Serve(grpcLis) }()
	go func() {
		if tlsConfig != nil {
			errc <- httpServer.ServeTLS(httpLis, "", "")
		} else {
			errc <- httpServer.Serve(httpLis)
		}
	}()
	s.log.Info("serving", "grpc_address", grpcLis.Addr().String(), "http_address", httpLis.Addr().String(),
		"data_dir", s.cfg.DataDir, "tls", tlsConfig != nil)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("listener stopped: %w", err)
	}
	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	_ = httpServer.Shutdown(shutdownCtx)
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		grpcServer.Stop()
	}
	s.uploads.abortAll()
	stop()
	s.refusals.flushAll()
	s.evictions.flushAll()
	s.log.Info("stopped")
	return nil
}

func (s *Server) newGRPCServer(tlsConfig *tls.Config) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxGRPCMessage),
		grpc.MaxSendMsgSize(maxGRPCMessage),
		grpc.MaxConcurrentStreams(uint32(s.cfg.MaxConcurrentStreams)),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.ForceServerCodecV2(newServerCodec()), // codec.go: fewer copies of uploads
	}
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(grpccreds.NewTLS(tlsConfig)))
	}
	g := grpc.NewServer(opts...)
	blobs := s.storage.blobs
	repb.RegisterCapabilitiesServer(g, &capabilitiesServer{blobLimit: s.cfg.BlobLimit()})
	repb.RegisterContentAddressableStorageServer(g, newCASServer(blobs, s.cfg.BlobLimit(), s.metrics))
	repb.RegisterActionCacheServer(g, newACServer(blobs))
	bspb.RegisterByteStreamServer(g, &byteStreamServer{
		blobs: blobs, uploads: s.uploads, blobLimit: s.cfg.BlobLimit(),
		idleTimeout: s.cfg.UploadIdleTimeout, metrics: s.metrics, log: s.log,
	})
	s.registerAssetServices(g)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	return g
}

func (s *Server) httpHandler(grpcAddr net.Addr, tls bool) http.Handler {
	mux := http.NewServeMux()
	cache := &httpCache{
		blobs:        s.storage.blobs,
		authenticate: s.authenticate,
		metrics:      s.metrics,
		log:          s.log,
		blobLimit:    s.cfg.BlobLimit(),
		acStrict:     s.cfg.HTTPACStrict,
		idleTimeout:  s.cfg.UploadIdleTimeout,
		refusals:     s.refusals,
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.registerAdmin(mux, grpcAddr, tls)
	// The cache protocol owns every other path that ends in /ac/HASH or /cas/HASH.
	_, grpcPort, _ := net.SplitHostPort(grpcAddr.String())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if isGRPCRequest(r) {
			answerGRPCOnHTTPPort(w, r, grpcPort)
			return
		}
		if _, _, _, ok := parseCachePath(r.URL.Path); ok {
			cache.ServeHTTP(w, r)
			return
		}
		s.serveUI(w, r)
	})
	return mux
}

// readyz answers 200 when the metadata store (and the shared object
// store, when there is one) answers; load balancers use it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.orgs.ListOrgs(ctx); err != nil {
		http.Error(w, "metadata store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if n := s.storage.nodes; n != nil {
		if err := n.ping(ctx); err != nil {
			http.Error(w, "shared store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

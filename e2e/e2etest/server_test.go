package e2etest

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeServerEnv makes this test binary act as a minimal stand-in for
// sealcache, so the harness's process handling is tested without the real
// server: it listens, writes key files, logs like sealcache and exits on SIGTERM.
const fakeServerEnv = "E2ETEST_FAKE_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeServerEnv) == "1" {
		os.Exit(runFakeServer())
	}
	os.Exit(m.Run())
}

func runFakeServer() int {
	fs := flag.NewFlagSet("fake-sealcache", flag.ExitOnError)
	dataDir := fs.String("data_dir", "", "")
	grpcAddr := fs.String("grpc_address", "", "")
	httpAddr := fs.String("http_address", "", "")
	chatty := fs.Bool("chatty", false, "log 2 MB after serving, more than a pipe buffer holds")
	fs.Parse(os.Args[1:])

	terminate := make(chan os.Signal, 1)
	signal.Notify(terminate, syscall.SIGTERM)
	grpcL, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		panic(err)
	}
	httpL, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		panic(err)
	}
	os.WriteFile(filepath.Join(*dataDir, AdminKeyFile), []byte("fake-admin-key\n"), 0o600)
	os.WriteFile(filepath.Join(*dataDir, OperatorKeyFile), []byte("fake-operator-key\n"), 0o600)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("serving", "grpc_address", grpcL.Addr().String(), "http_address", httpL.Addr().String())
	if *chatty {
		for i := range 20000 {
			log.Info("filler", "i", i, "pad", strings.Repeat("x", 60))
		}
	}
	<-terminate
	log.Info("stopped")
	return 0
}

func useFakeServer(t *testing.T) {
	t.Setenv(fakeServerEnv, "1")
	t.Setenv(BinaryEnv, os.Args[0])
}

func TestStartServerLearnsPortsAndKeysAndStopsOnSIGTERM(t *testing.T) {
	useFakeServer(t)
	s := StartServer(t)

	for _, addr := range []string{s.GRPCAddr, s.HTTPAddr} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dialing the address the server logged: %v", err)
		}
		conn.Close()
	}
	if s.AdminKey() != "fake-admin-key" || s.OperatorKey() != "fake-operator-key" {
		t.Errorf("keys read as %q and %q", s.AdminKey(), s.OperatorKey())
	}
	if got, want := s.GRPCFlags("k"), []string{"--remote_cache=grpc://" + s.GRPCAddr, "--remote_header=x-api-key=k"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GRPCFlags = %v, want %v", got, want)
	}
	if got, want := s.HTTPFlags("k"), []string{"--remote_cache=http://sealcache:k@" + s.HTTPAddr}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HTTPFlags = %v, want %v", got, want)
	}

	s.Stop()
	if !strings.Contains(s.Log(), "msg=stopped") {
		t.Errorf("the log lacks what the server wrote while shutting down:\n%s", s.Log())
	}
}

func TestServerLogIsDrainedSoAChattyServerNeverBlocks(t *testing.T) {
	useFakeServer(t)
	// If the harness stopped reading stderr after "serving", the fake would
	// block writing its filler and never see SIGTERM's handler run to the end.
	s := StartServer(t, "--chatty")
	s.Stop()
	if !strings.Contains(s.Log(), "msg=stopped") || !strings.Contains(s.Log(), "i=19999") {
		t.Errorf("the log was not read to the end (%d bytes)", len(s.Log()))
	}
}

func TestKeysAreEmptyWhenTheServerWroteNone(t *testing.T) {
	s := &Server{DataDir: t.TempDir(), t: t}
	if s.AdminKey() != "" || s.OperatorKey() != "" {
		t.Errorf("want empty keys for a data directory without key files")
	}
	if got := s.GRPCFlags(""); len(got) != 1 {
		t.Errorf("GRPCFlags(\"\") = %v, want only --remote_cache", got)
	}
	if got := s.HTTPFlags(""); got[0] != "--remote_cache=http://"+s.HTTPAddr {
		t.Errorf("HTTPFlags(\"\") = %v", got)
	}
}

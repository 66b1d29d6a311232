package s3test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Each NewBucket is a fresh, empty bucket, gone once its test ends.
func TestNewBucketIsFreshAndRemoved(t *testing.T) {
	var srv *Server
	var name string
	t.Run("use", func(t *testing.T) {
		srv, name = NewBucket(t)
		out, err := srv.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Contents) != 0 {
			t.Fatalf("new bucket %s holds %d objects", name, len(out.Contents))
		}
		_, err = srv.Client().PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String(name), Key: aws.String("a/b"), Body: strings.NewReader("x"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, other := NewBucket(t); other == name {
			t.Fatalf("two NewBucket calls both gave %s", name)
		}
	})
	_, err := srv.Client().HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String(name)})
	if err == nil {
		t.Fatalf("bucket %s still exists after its test ended", name)
	}
}

// The server listens on 127.0.0.1 at its port and nowhere else: no admin,
// WebUI, metrics or debug listener, nothing on another interface.
func TestServerListensOnLoopbackOnly(t *testing.T) {
	srv := Start(t)
	listening, err := listeningSockets(srv.proc.Pid())
	if err != nil {
		t.Skipf("cannot read the server's sockets from /proc: %v", err)
	}
	want := strings.TrimPrefix(srv.Endpoint, "http://")
	if len(listening) != 1 || listening[0] != want {
		t.Fatalf("versitygw listens on %v; want only %s", listening, want)
	}
}

// listeningSockets returns the addresses pid listens on over TCP, from
// Linux's /proc: the process's socket inodes matched against the
// namespace's socket tables.
func listeningSockets(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			const stateListen = "0A"
			if len(fields) < 10 || fields[3] != stateListen || !inodes[fields[9]] {
				continue
			}
			addr, err := decodeAddr(fields[1])
			if err != nil {
				f.Close()
				return nil, err
			}
			addrs = append(addrs, addr)
		}
		f.Close()
	}
	return addrs, nil
}

// decodeAddr turns /proc's "0100007F:1F90" into "127.0.0.1:8080"; IPv6
// addresses are only told apart from IPv4 ones, which is all the test needs.
func decodeAddr(s string) (string, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(portHex, 16, 16)
	if !ok || err != nil {
		return "", errors.New("bad /proc address " + s)
	}
	if len(ipHex) != 8 {
		return fmt.Sprintf("[ipv6 %s]:%d", ipHex, port), nil
	}
	ip, err := strconv.ParseUint(ipHex, 16, 32)
	if err != nil {
		return "", errors.New("bad /proc address " + s)
	}
	// The kernel prints the address in host (little-endian) byte order.
	return fmt.Sprintf("%d.%d.%d.%d:%d", byte(ip), byte(ip>>8), byte(ip>>16), byte(ip>>24), port), nil
}

// $SEALCACHE_VERSITYGW names the binary before anything else; a name that
// does not exist is an error (a broken setting), not "not installed".
func TestBinaryFromEnvironment(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "versitygw")
	t.Setenv(binaryEnv, missing)
	if _, err := binary(); err == nil || errors.Is(err, errNotInstalled) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("binary() with $%s=%s = %v; want an error naming the path", binaryEnv, missing, err)
	}
	if err := os.WriteFile(missing, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := binary(); err != nil || got != missing {
		t.Fatalf("binary() = %q, %v; want %q", got, err, missing)
	}
}

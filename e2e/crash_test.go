package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sealcache/sealcache/e2e/e2etest"
	"github.com/sealcache/sealcache/encryption/kms"
)

// The server is killed (SIGKILL, no shutdown) while 64 ByteStream uploads
// are in flight, half to a plain org and half to an org with CMEK on, then
// restarted on the same data directory. Whatever FindMissingBlobs then
// calls present must read back whole and correct: a crash may lose
// uploads, never leave part of one where a reader can see it. Each round
// kills the server at another point.
func TestServerKilledDuringUploadsLeavesNoPartialBlob(t *testing.T) {
	dataDir := t.TempDir()
	server := e2etest.StartServerIn(t, dataDir)
	sealed := createOrg(t, server, "sealed")
	if err := kms.CreateLocalKey(filepath.Join(dataDir, "kms"), "crash-test"); err != nil {
		t.Fatal(err)
	}
	enableCMEK(t, server, sealed.GetAdminKeySecret(), "local-kms://crash-test")
	orgs := []struct{ name, key string }{
		{"default (plain)", server.AdminKey()},
		{"sealed (CMEK)", sealed.GetAdminKeySecret()},
	}

	const uploads = 64
	for round, killAfter := range []int{8, 24, 40} {
		blobs := crashTestBlobs(round, uploads)
		completed := make(chan struct{}, uploads)
		acknowledged := make([]bool, uploads)
		var wg sync.WaitGroup
		for i, blob := range blobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := upload(server.GRPCAddr, orgs[i%2].key, blob); err == nil {
					acknowledged[i] = true
				}
				completed <- struct{}{}
			}()
		}
		for range killAfter {
			<-completed
		}
		server.Kill()
		wg.Wait()

		server = e2etest.StartServerIn(t, dataDir)
		present, lost := 0, 0
		for o, org := range orgs {
			var mine [][]byte
			for i := o; i < uploads; i += 2 {
				mine = append(mine, blobs[i])
			}
			found := presentBlobs(t, server.GRPCAddr, org.key, mine)
			for i, blob := range mine {
				if !found[i] {
					if acknowledged[o+2*i] {
						lost++
					}
					continue
				}
				present++
				got, err := download(server.GRPCAddr, org.key, blob)
				if err != nil || !bytes.Equal(got, blob) {
					t.Errorf("round %d, org %s: blob %d (%d bytes) is present after the crash but reads back as %d bytes (%v)",
						round, org.name, o+2*i, len(blob), len(got), err)
				}
			}
		}
		acked := 0
		for _, a := range acknowledged {
			if a {
				acked++
			}
		}
		if acked == uploads {
			t.Errorf("round %d: every upload finished before the kill, so the round tested no interrupted upload", round)
		}
		t.Logf("round %d: killed after %d of %d uploads finished; %d were acknowledged, %d present after the restart and all read back whole; %d acknowledged ones lost",
			round, killAfter, uploads, acked, present, lost)
	}
}

// crashTestBlobs returns n distinct random blobs from 1 KB to 4 MB, spread
// evenly on a log scale, different in every round.
func crashTestBlobs(round, n int) [][]byte {
	random := rand.NewChaCha8([32]byte{byte(round)})
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = make([]byte, int(1000*math.Pow(4000, float64(i)/float64(n-1))))
		random.Read(blobs[i])
	}
	return blobs
}

// dial opens a gRPC connection; calls carry their key in withKey's context.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func withKey(apiKey string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-api-key", apiKey)
}

// upload writes blob with one ByteStream Write in 64 KiB messages.
func upload(addr, apiKey string, blob []byte) error {
	conn, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := bspb.NewByteStreamClient(conn).Write(withKey(apiKey))
	if err != nil {
		return err
	}
	d := e2etest.DigestOf(blob)
	name := fmt.Sprintf("uploads/crash/blobs/%s/%d", d.Hash, d.SizeBytes)
	const chunk = 64 << 10
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(blob))
		if err := stream.Send(&bspb.WriteRequest{ResourceName: name, WriteOffset: int64(off), Data: blob[off:end], FinishWrite: end == len(blob)}); err != nil {
			break // CloseAndRecv says why
		}
		if end == len(blob) {
			break
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

// presentBlobs asks FindMissingBlobs about blobs and reports which are present.
func presentBlobs(t *testing.T, addr, apiKey string, blobs [][]byte) []bool {
	t.Helper()
	conn, err := dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &repb.FindMissingBlobsRequest{}
	for _, b := range blobs {
		req.BlobDigests = append(req.BlobDigests, e2etest.DigestOf(b))
	}
	resp, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(withKey(apiKey), req)
	if err != nil {
		t.Fatalf("FindMissingBlobs after the restart: %v", err)
	}
	missing := map[string]bool{}
	for _, d := range resp.MissingBlobDigests {
		missing[d.Hash] = true
	}
	present := make([]bool, len(blobs))
	for i, d := range req.BlobDigests {
		present[i] = !missing[d.Hash]
	}
	return present
}

// download reads a whole blob with ByteStream Read.
func download(addr, apiKey string, blob []byte) ([]byte, error) {
	conn, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	d := e2etest.DigestOf(blob)
	stream, err := bspb.NewByteStreamClient(conn).Read(withKey(apiKey), &bspb.ReadRequest{ResourceName: fmt.Sprintf("blobs/%s/%d", d.Hash, d.SizeBytes)})
	if err != nil {
		return nil, err
	}
	var got []byte
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, resp.Data...)
	}
}

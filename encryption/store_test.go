package encryption

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/encryption/kms"
	"github.com/sealcache/sealcache/encryption/stream"
)

func blob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func casKey(org string, data []byte) cas.Key {
	return cas.Key{Partition: cas.Partition(org), Kind: cas.KindCAS, Digest: cas.DigestOf(repb.DigestFunction_SHA256, data)}
}

func acKey(org, instance string, action []byte) cas.Key {
	return cas.Key{Partition: cas.Partition(org), Kind: cas.KindAC, Instance: instance, Digest: cas.DigestOf(repb.DigestFunction_SHA256, action)}
}

func (e *env) put(k cas.Key, data []byte) {
	e.t.Helper()
	if err := e.store.Put(context.Background(), k, int64(len(data)), bytes.NewReader(data)); err != nil {
		e.t.Fatalf("Put %s: %v", k, err)
	}
}

func (e *env) get(k cas.Key, offset int64) ([]byte, error) {
	rc, _, err := e.store.Get(context.Background(), k, offset)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestCMEKOffGoesToPlainUnchanged(t *testing.T) {
	e := newEnv(t)
	data := blob(1000)
	k := casKey("acme", data)
	e.put(k, data)
	if !bytes.Equal(e.mem.Raw(k), data) {
		t.Fatal("CMEK off: the object was not stored as is under its own key")
	}
	if got, err := e.get(k, 10); err != nil || !bytes.Equal(got, data[10:]) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
}

func TestSealedRoundTripAndOffsetReads(t *testing.T) {
	e := newEnv(t)
	rec := e.enable("acme", customerURI)
	data := blob(3*stream.ChunkSize + 5)
	k := casKey("acme", data)
	e.put(k, data)

	stored := e.mem.Raw(sealedKey(k, rec.KeyID))
	if stored == nil || e.mem.Raw(k) != nil {
		t.Fatalf("sealed object not under partition acme/k%s", rec.KeyID)
	}
	if int64(len(stored)) != stream.SealedSize(rec.KeyID, int64(len(data))) {
		t.Fatalf("stored %d bytes, SealedSize says %d", len(stored), stream.SealedSize(rec.KeyID, int64(len(data))))
	}
	if bytes.Contains(stored, data[:64]) {
		t.Fatal("plaintext visible in the sealed object")
	}
	c := int64(stream.ChunkSize)
	for _, off := range []int64{0, 1, c - 1, c, c + 1, 2 * c, 3*c - 1, 3 * c, 3*c + 4, 3*c + 5} {
		got, err := e.get(k, off)
		if err != nil || !bytes.Equal(got, data[off:]) {
			t.Fatalf("offset %d: got %d bytes, want %d, err %v", off, len(got), int64(len(data))-off, err)
		}
	}
	if _, err := e.get(k, int64(len(data))+1); err == nil {
		t.Fatal("read past the end succeeded")
	}
}

func TestEmptyBlobIsSealedToo(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	k := casKey("acme", nil)
	e.put(k, nil)
	if got, err := e.get(k, 0); err != nil || len(got) != 0 {
		t.Fatalf("empty blob: %q, %v", got, err)
	}
}

func TestOldDataIsAMissAfterEnableAndKeyChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := blob(100)
	k := casKey("acme", data)
	e.put(k, data) // plain
	e.enable("acme", customerURI)
	if _, err := e.get(k, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("plain data after enable: err %v, want a miss", err)
	}
	if missing, _ := e.store.FindMissing(ctx, []cas.Key{k}); len(missing) != 1 {
		t.Fatal("FindMissing reports plain data as present after enable")
	}
	e.put(k, data)
	e.enable("acme", customerURI2) // a new key id
	if _, err := e.get(k, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("data of the earlier key id: err %v, want a miss", err)
	}
}

func TestSealedPutVerifiesTheDigest(t *testing.T) {
	e := newEnv(t)
	rec := e.enable("acme", customerURI)
	data := blob(2*stream.ChunkSize + 1)
	k := casKey("acme", data)
	for name, body := range map[string][]byte{
		"changed byte": append(append([]byte{}, data[:1000]...), append([]byte{data[1000] ^ 1}, data[1001:]...)...),
		"short":        data[:len(data)-1],
		"long":         append(append([]byte{}, data...), 0),
	} {
		err := e.store.Put(context.Background(), k, cas.SizeUnknown, bytes.NewReader(body))
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("%s: err %v, want ErrDigestMismatch", name, err)
		}
		if !strings.Contains(err.Error(), k.Digest.String()) {
			t.Errorf("%s: message %q does not name the expected digest", name, err)
		}
		if got := e.mem.Keys(SealedPartition("acme", rec.KeyID)); len(got) != 0 {
			t.Fatalf("%s: something was stored: %v", name, got)
		}
	}
}

func TestCorruptSealedObjectFailsAndIsDeleted(t *testing.T) {
	e := newEnv(t)
	rec := e.enable("acme", customerURI)
	data := blob(2*stream.ChunkSize + 7)
	k := casKey("acme", data)
	e.put(k, data)
	sk := sealedKey(k, rec.KeyID)
	bad := bytes.Clone(e.mem.Raw(sk))
	bad[len(bad)-20] ^= 0x80 // in the last chunk
	e.mem.Set(sk, bad)

	got, err := e.get(k, 0)
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("err %v, want ErrCorrupt and not a miss", err)
	}
	if len(got) > 2*stream.ChunkSize {
		t.Fatalf("returned %d bytes: plaintext of the bad chunk leaked", len(got))
	}
	if e.mem.Raw(sk) != nil {
		t.Fatal("the corrupt object was not deleted")
	}
	if _, err := e.get(k, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("after deletion: err %v, want a miss", err)
	}
}

// moved copies the sealed object at from to the sealed location of to and
// checks that reading it there fails.
func (e *env) mustNotOpenWhenMoved(what string, from, to cas.Key, keyFrom, keyTo string) {
	e.t.Helper()
	e.mem.Set(sealedKey(to, keyTo), bytes.Clone(e.mem.Raw(sealedKey(from, keyFrom))))
	if _, err := e.get(to, 0); !errors.Is(err, ErrCorrupt) {
		e.t.Fatalf("%s: err %v, want ErrCorrupt", what, err)
	}
}

func TestSealedObjectsCannotBeMovedBetweenOrgsKindsInstancesOrDigests(t *testing.T) {
	e := newEnv(t)
	a := e.enable("acme", customerURI)
	b := e.enable("beta", customerURI)
	result := []byte("an ActionResult")
	action := []byte("an Action")

	acA := acKey("acme", "linux", action)
	e.put(acA, result)
	e.mustNotOpenWhenMoved("AC entry served as the CAS blob of the same digest",
		acA, cas.Key{Partition: "acme", Kind: cas.KindCAS, Digest: acA.Digest}, a.KeyID, a.KeyID)
	e.mustNotOpenWhenMoved("AC entry of another instance", acA, acKey("acme", "windows", action), a.KeyID, a.KeyID)
	e.mustNotOpenWhenMoved("AC entry of another action", acA, acKey("acme", "linux", []byte("other")), a.KeyID, a.KeyID)
	e.mustNotOpenWhenMoved("AC entry of another org", acA, acKey("beta", "linux", action), a.KeyID, b.KeyID)

	data := blob(300)
	cA := casKey("acme", data)
	e.put(cA, data)
	e.mustNotOpenWhenMoved("CAS blob of another org", cA, casKey("beta", data), a.KeyID, b.KeyID)
	sha1Key := cA
	sha1Key.Digest.Function = repb.DigestFunction_SHA1 // same hash text, other function
	e.mustNotOpenWhenMoved("CAS blob under another digest function", cA, sha1Key, a.KeyID, a.KeyID)
}

func TestKeyTroubleIsNeverAMiss(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	cw := e.kms.get(customerURI)
	cw.setFail(cw.kmsError(kms.KindDisabled, "unwrap", errors.New("key version disabled")))
	ctx := context.Background()
	k := casKey("acme", []byte("x"))
	_, _, getErr := e.store.Get(ctx, k, 0)
	putErr := e.store.Put(ctx, k, 1, strings.NewReader("x"))
	_, fmErr := e.store.FindMissing(ctx, []cas.Key{k})
	delErr := e.store.Delete(ctx, k)
	for name, err := range map[string]error{"Get": getErr, "Put": putErr, "FindMissing": fmErr, "Delete": delErr} {
		var kerr *KeyUnavailableError
		if !errors.As(err, &kerr) || errors.Is(err, cas.ErrNotFound) {
			t.Errorf("%s: err %v, want *KeyUnavailableError", name, err)
		}
	}
}

func TestFindMissingAcrossOrgsKeepsInputOrder(t *testing.T) {
	e := newEnv(t)
	e.enable("acme", customerURI)
	ctx := context.Background()
	var keys, want []cas.Key
	for i := range 6 {
		org := []string{"acme", "plainorg"}[i%2]
		data := blob(10 + i)
		k := casKey(org, data)
		keys = append(keys, k)
		if i%3 == 0 {
			e.put(k, data)
		} else {
			want = append(want, k)
		}
	}
	got, err := e.store.FindMissing(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("missing %v, want %v", got, want)
		}
	}
	if err := e.store.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.store.FindMissing(ctx, keys[:1]); len(got) != 1 {
		t.Fatal("Delete did not delete the sealed object")
	}
}

func TestPartitionWithoutOrgIsRejected(t *testing.T) {
	e := newEnv(t)
	if err := e.store.Put(context.Background(), cas.Key{Kind: cas.KindCAS}, 0, strings.NewReader("")); !errors.Is(err, ErrBadPartition) {
		t.Fatalf("err %v, want ErrBadPartition", err)
	}
}

func TestSealedPartitionLayout(t *testing.T) {
	if got := SealedPartition("acme", "abc"); got != "acme/kabc" {
		t.Errorf("SealedPartition(acme) = %q", got)
	}
	id := newKeyID()
	if got := keyIDOfPartition(SealedPartition("acme", id)); got != id {
		t.Errorf("keyIDOfPartition = %q, want %q", got, id)
	}
	if got := keyIDOfPartition("acme/kitchen"); got != "" {
		t.Errorf("keyIDOfPartition(acme/kitchen) = %q, want plain", got)
	}
	if err := newEnv(t).store.Put(context.Background(), cas.Key{Partition: "acme/team", Kind: cas.KindCAS}, 0, strings.NewReader("")); !errors.Is(err, ErrBadPartition) {
		t.Errorf("a key below an org partition = %v; want ErrBadPartition: the sealing store adds the key segment itself", err)
	}
}

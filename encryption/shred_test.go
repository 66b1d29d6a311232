package encryption

import (
	"context"
	"testing"

	"github.com/sealcache/sealcache/cas"
)

func TestShredCheck(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range 2 {
		d := blob(100 + i)
		e.put(casKey("acme", d), d) // plain, before CMEK
	}
	first := e.enable("acme", customerURI)
	for i := range 3 {
		d := blob(200 + i)
		e.put(casKey("acme", d), d)
	}
	e.put(acKey("acme", "linux", []byte("action")), []byte("result"))
	e.put(casKey("other", blob(5)), blob(5)) // another org: not walked

	rep, err := ShredCheck(ctx, e.mem, e.mem, e.keys, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// Enabling deleted the two plain objects.
	if rep.Objects != 4 || rep.Plain != 0 || rep.Sealed != 4 || rep.Opened != 4 || !rep.Shredded() {
		t.Fatalf("while enabled: %+v", rep)
	}
	if k := rep.ByKeyID[first.KeyID]; k == nil || !k.Active || k.Opened != 4 {
		t.Fatalf("per key id: %+v", rep.ByKeyID)
	}

	// A copy of the sealed objects made while enabled (as a backup of the
	// data directory would be) ...
	sealedCopy := map[cas.Key][]byte{}
	for _, k := range e.mem.Keys(SealedPartition("acme", first.KeyID)) {
		sealedCopy[k] = e.mem.Raw(k)
	}

	// ... Disable deletes the key records and the sealed objects.
	if err := e.manager.Disable(ctx, "acme", "admin-key"); err != nil {
		t.Fatal(err)
	}
	rep, err = ShredCheck(ctx, e.mem, e.mem, e.keys, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Objects != 0 || !rep.Shredded() {
		t.Fatalf("after disable: %+v; want no object left", rep)
	}

	// Enable again (which deletes whatever the org has stored), then
	// restore the copy: it brings back ciphertext no key opens.
	second := e.enable("acme", customerURI2)
	for k, raw := range sealedCopy {
		e.mem.Set(k, raw)
	}
	d := blob(999)
	e.put(casKey("acme", d), d)
	rep, err = ShredCheck(ctx, e.mem, e.mem, e.keys, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sealed != 5 || rep.Opened != 1 || rep.ByKeyID[second.KeyID].Opened != 1 || rep.ByKeyID[first.KeyID].Opened != 0 || rep.ByKeyID[first.KeyID].Active || !rep.Shredded() {
		t.Fatalf("restored copy after re-enable: %+v", rep)
	}
}

func TestShreddedIsFalseWhenADeletedKeysObjectOpened(t *testing.T) {
	rep := ShredReport{ByKeyID: map[string]*KeyIDReport{"old": {Objects: 3, Opened: 1}}}
	if rep.Shredded() {
		t.Fatal("an opened object of a deleted key counts as shredded")
	}
}

package encryption

import (
	"context"
	"testing"
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
	if rep.Objects != 6 || rep.Plain != 2 || rep.Sealed != 4 || rep.Opened != 4 || !rep.Shredded() {
		t.Fatalf("while enabled: %+v", rep)
	}
	if k := rep.ByKeyID[first.KeyID]; k == nil || !k.Active || k.Opened != 4 {
		t.Fatalf("per key id: %+v", rep.ByKeyID)
	}

	// Disable: every sealed object must now fail to open.
	if err := e.manager.Disable(ctx, "acme", "admin-key"); err != nil {
		t.Fatal(err)
	}
	rep, err = ShredCheck(ctx, e.mem, e.mem, e.keys, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sealed != 4 || rep.Opened != 0 || !rep.Shredded() || rep.ByKeyID[first.KeyID].Active {
		t.Fatalf("after disable: %+v", rep)
	}

	// Enable again: a new key id; the new key cannot open the old objects.
	second := e.enable("acme", customerURI2)
	d := blob(999)
	e.put(casKey("acme", d), d)
	rep, err = ShredCheck(ctx, e.mem, e.mem, e.keys, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sealed != 5 || rep.Opened != 1 || rep.ByKeyID[second.KeyID].Opened != 1 || rep.ByKeyID[first.KeyID].Opened != 0 || !rep.Shredded() {
		t.Fatalf("after re-enable: %+v", rep)
	}
}

func TestShreddedIsFalseWhenADeletedKeysObjectOpened(t *testing.T) {
	rep := ShredReport{ByKeyID: map[string]*KeyIDReport{"old": {Objects: 3, Opened: 1}}}
	if rep.Shredded() {
		t.Fatal("an opened object of a deleted key counts as shredded")
	}
}

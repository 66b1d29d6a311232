package s3

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/sealcache/sealcache/cas"
	"github.com/sealcache/sealcache/cas/castest"
)

func mustLayout(t *testing.T, prefix string) Layout {
	t.Helper()
	l, err := NewLayout(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The names objects get: the disk store's layout under the bucket prefix.
func TestObjectNames(t *testing.T) {
	data := []byte("hello")
	sha := cas.DigestOf(repb.DigestFunction_SHA256, data)
	blake := cas.DigestOf(repb.DigestFunction_BLAKE3, data)
	hashOnly := sha
	hashOnly.Size = cas.SizeUnknown
	for _, c := range []struct {
		prefix string
		key    cas.Key
		want   string
	}{
		{"cache", cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: sha},
			"cache/org1/@cas/sha256/" + sha.Hash[:2] + "/" + sha.Hash + "-5"},
		{"", cas.Key{Partition: "org1/kA", Kind: cas.KindCAS, Digest: blake},
			"org1/kA/@cas/blake3/" + blake.Hash[:2] + "/" + blake.Hash + "-5"},
		{"/a/b/", cas.Key{Partition: "org1", Kind: cas.KindCAS, Digest: hashOnly},
			"a/b/org1/@cas/sha256/" + sha.Hash[:2] + "/" + sha.Hash + "--1"},
		{"cache", cas.Key{Partition: "org1", Kind: cas.KindAC, Instance: "linux/x86", Digest: sha},
			"cache/org1/@ac/i6c696e75782f783836/sha256/" + sha.Hash[:2] + "/" + sha.Hash + "-5"},
		{"cache", cas.Key{Partition: "org1", Kind: cas.KindAC, Instance: "", Digest: sha},
			"cache/org1/@ac/i/sha256/" + sha.Hash[:2] + "/" + sha.Hash + "-5"},
	} {
		l := mustLayout(t, c.prefix)
		got, err := l.ObjectName(c.key)
		if err != nil {
			t.Fatalf("ObjectName(%s): %v", c.key, err)
		}
		if got != c.want {
			t.Fatalf("ObjectName(%s) under %q = %q; want %q", c.key, c.prefix, got, c.want)
		}
		back, err := l.ParseObjectName(got)
		if err != nil {
			t.Fatalf("ParseObjectName(%q): %v", got, err)
		}
		if back != c.key {
			t.Fatalf("ParseObjectName(%q) = %s; want %s", got, back, c.key)
		}
	}
}

// A partition's prefix holds its own objects and those of partitions
// below it, never those of a partition that merely starts alike.
func TestPartitionPrefixIsSegmentWise(t *testing.T) {
	l := mustLayout(t, "cache")
	prefix, err := l.PartitionPrefix("org1")
	if err != nil {
		t.Fatal(err)
	}
	name := func(p cas.Partition) string {
		n, err := l.ObjectName(castest.CASKey(p, []byte("x")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for p, want := range map[cas.Partition]bool{"org1": true, "org1/kA": true, "org10": false, "org": false, "org2/org1": false} {
		if got := strings.HasPrefix(name(p), prefix); got != want {
			t.Fatalf("object of partition %s under %q: %v; want %v", p, prefix, got, want)
		}
	}
}

func TestObjectNameRejectsBadKeys(t *testing.T) {
	l := mustLayout(t, "cache")
	good := castest.CASKey("org1", []byte("x"))
	for name, edit := range map[string]func(*cas.Key){
		"empty partition":         func(k *cas.Key) { k.Partition = "" },
		"dot-dot partition":       func(k *cas.Key) { k.Partition = "../x" },
		"empty segment":           func(k *cas.Key) { k.Partition = "a//b" },
		"no kind":                 func(k *cas.Key) { k.Kind = 0 },
		"upper-case hash":         func(k *cas.Key) { k.Digest.Hash = strings.ToUpper(k.Digest.Hash) },
		"short hash":              func(k *cas.Key) { k.Digest.Hash = k.Digest.Hash[:10] },
		"hash with a slash":       func(k *cas.Key) { k.Digest.Hash = "../" + k.Digest.Hash[3:] },
		"size below SizeUnknown":  func(k *cas.Key) { k.Digest.Size = -2 },
		"unsupported function":    func(k *cas.Key) { k.Digest.Function = repb.DigestFunction_MD5 },
		"instance over the limit": func(k *cas.Key) { k.Kind, k.Instance = cas.KindAC, strings.Repeat("i", MaxInstanceLen+1) },
		"name over 1024 bytes":    func(k *cas.Key) { k.Partition = cas.Partition(strings.Repeat("p/", 500) + "p") },
	} {
		k := good
		edit(&k)
		if n, err := l.ObjectName(k); err == nil {
			t.Fatalf("%s: ObjectName(%s) = %q; want an error", name, k, n)
		}
	}
}

// Names this layout does not produce do not parse, so a walk cannot
// mistake a foreign object for a cache entry.
func TestParseObjectNameRejectsForeignNames(t *testing.T) {
	l := mustLayout(t, "cache")
	good, err := l.ObjectName(castest.CASKey("org1", []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	hash := good[strings.LastIndex(good, "/")+1 : strings.LastIndex(good, "-")]
	for _, name := range []string{
		"other/org1/@cas/sha256/" + hash[:2] + "/" + hash + "-1",  // another prefix
		"cache/org1/readme.txt",                                   // no kind element
		"cache/@cas/sha256/" + hash[:2] + "/" + hash + "-1",       // no partition
		"cache/org1/@cas/sha256/" + hash[:2] + "/" + hash,         // no size
		"cache/org1/@cas/sha256/" + hash[:2] + "/" + hash + "-01", // size not canonical
		"cache/org1/@cas/sha256/" + hash[:2] + "/" + hash + "--2", // size below -1
		"cache/org1/@cas/sha256/zz/" + hash + "-1",                // wrong fan-out
		"cache/org1/@cas/SHA256/" + hash[:2] + "/" + hash + "-1",  // function not lower case
		"cache/org1/@cas/md5/" + hash[:2] + "/" + hash + "-1",     // unsupported function
		"cache/org1/@ac/sha256/" + hash[:2] + "/" + hash + "-1",   // no instance element
		"cache/org1/@ac/iZZ/sha256/" + hash[:2] + "/" + hash + "-1",
		"cache/org1/@ac/i6C/sha256/" + hash[:2] + "/" + hash + "-1", // instance hex not lower case
		"cache/org1/@cas/sha256/" + hash[:2] + "/" + hash + "-1/",   // a "directory"
	} {
		if k, err := l.ParseObjectName(name); err == nil {
			t.Fatalf("ParseObjectName(%q) = %s; want an error", name, k)
		}
	}
}

func TestNewLayoutRejectsBadPrefixes(t *testing.T) {
	for _, p := range []string{"a//b", "a/../b", "./a", "a/."} {
		if _, err := NewLayout(p); err == nil {
			t.Fatalf("NewLayout(%q) succeeded; want an error", p)
		}
	}
	for p, want := range map[string]string{"": "", "/": "", "a": "a/", "/a/b/": "a/b/"} {
		if l := mustLayout(t, p); l.Prefix() != want {
			t.Fatalf("NewLayout(%q).Prefix() = %q; want %q", p, l.Prefix(), want)
		}
	}
}

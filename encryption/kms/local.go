package kms

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/crypto/chacha20poly1305"
)

// local-kms keeps each key as a file of 32 random bytes, named after the key,
// in Config.LocalDir. It is the embedded default for the operator key and a
// stand-in for tests; it protects data only as well as the directory is
// protected.
//
// A key is disabled by renaming its file to NAME.disabled (DisableLocalKey),
// which makes Wrap and Unwrap fail with KindDisabled until it is renamed back
// (EnableLocalKey). Rotation is not supported: a local key has one version;
// to change it, enable CMEK with a new local key name.
//
// Wrapped form: version byte (1) || 24-byte nonce || XChaCha20-Poly1305
// ciphertext and tag, with the associated data as AEAD associated data.

const (
	localKeySize        = 32
	localFormatV1       = 1
	localDisabledSuffix = ".disabled"
)

var localNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

type localWrapper struct {
	uri  string
	dir  string
	name string
}

func openLocal(uri, name string, cfg Config) (Wrapper, error) {
	if !localNameRE.MatchString(name) {
		return nil, invalidURI(uri, ProviderLocal, fmt.Errorf("bad key name %q; use %s", name, localURIForm))
	}
	if cfg.LocalDir == "" {
		return nil, &Error{Kind: KindOther, URI: uri, Op: "open", Provider: ProviderLocal,
			Err: errors.New("local-kms keys are not enabled on this server (no local key directory configured)")}
	}
	return &localWrapper{uri: uri, dir: cfg.LocalDir, name: name}, nil
}

func (w *localWrapper) URI() string { return w.uri }

func (w *localWrapper) Wrap(ctx context.Context, plaintext, associatedData []byte) ([]byte, error) {
	aead, err := w.aead("wrap")
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+len(plaintext)+aead.Overhead())
	out[0] = localFormatV1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, w.err("wrap", KindOther, err)
	}
	return aead.Seal(out, out[1:], plaintext, associatedData), nil
}

func (w *localWrapper) Unwrap(ctx context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	aead, err := w.aead("unwrap")
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < 1+chacha20poly1305.NonceSizeX+aead.Overhead() || ciphertext[0] != localFormatV1 {
		return nil, w.err("unwrap", KindInvalidCiphertext, errors.New("not a local-kms wrapped key"))
	}
	nonce, sealed := ciphertext[1:1+chacha20poly1305.NonceSizeX], ciphertext[1+chacha20poly1305.NonceSizeX:]
	plaintext, err := aead.Open(nil, nonce, sealed, associatedData)
	if err != nil {
		return nil, w.err("unwrap", KindInvalidCiphertext, errors.New("wrapped key does not open with this key and associated data"))
	}
	return plaintext, nil
}

// aead reads the key file on every call, so disabling or removing the file
// takes effect at once.
func (w *localWrapper) aead(op string) (cipher.AEAD, error) {
	key, err := readLocalKey(w.dir, w.name)
	if err != nil {
		var kerr *Error
		if errors.As(err, &kerr) {
			kerr.URI, kerr.Op = w.uri, op
		}
		return nil, err
	}
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, w.err(op, KindOther, err)
	}
	return aead, nil
}

func (w *localWrapper) err(op string, kind ErrorKind, err error) *Error {
	return &Error{Kind: kind, URI: w.uri, Op: op, Provider: ProviderLocal, Err: err}
}

// readLocalKey returns the key bytes of dir/name; the caller zeroes them.
func readLocalKey(dir, name string) ([]byte, error) {
	uri := ProviderLocal + "://" + name
	path := filepath.Join(dir, name)
	key, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, derr := os.Stat(path + localDisabledSuffix); derr == nil {
			return nil, &Error{Kind: KindDisabled, URI: uri, Provider: ProviderLocal,
				Err: fmt.Errorf("key file %s is disabled; rename it to %s to enable it", path+localDisabledSuffix, path)}
		}
		return nil, &Error{Kind: KindNotFound, URI: uri, Provider: ProviderLocal,
			Err: fmt.Errorf("no key file %s", path)}
	case errors.Is(err, fs.ErrPermission):
		return nil, &Error{Kind: KindPermissionDenied, URI: uri, Provider: ProviderLocal,
			Err: fmt.Errorf("cannot read key file: %w", err)}
	case err != nil:
		return nil, &Error{Kind: KindUnavailable, URI: uri, Provider: ProviderLocal, Err: err}
	}
	if len(key) != localKeySize {
		clear(key)
		return nil, &Error{Kind: KindOther, URI: uri, Provider: ProviderLocal,
			Err: fmt.Errorf("key file %s holds %d bytes, want %d random bytes", path, len(key), localKeySize)}
	}
	return key, nil
}

// CreateLocalKey creates key file dir/name with 32 random bytes (mode 0600,
// dir created with mode 0700). It fails with an error matching fs.ErrExist if
// the key (or a disabled key of that name) already exists: a key is never
// overwritten, since that would lose every key wrapped with it.
func CreateLocalKey(dir, name string) error {
	if !localNameRE.MatchString(name) {
		return invalidURI(ProviderLocal+"://"+name, ProviderLocal, fmt.Errorf("bad key name %q; use %s", name, localURIForm))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path + localDisabledSuffix); err == nil {
		return fmt.Errorf("local key %s exists but is disabled: %w", path+localDisabledSuffix, fs.ErrExist)
	}
	// Write a temporary file, then hard-link it into place: the key appears
	// complete or not at all, and Link refuses to replace an existing key.
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	key := make([]byte, localKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("local key %s already exists: %w", path, fs.ErrExist)
		}
		return err
	}
	return syncDir(dir)
}

// EnsureLocalKey creates key dir/name unless it exists, for the operator's
// default key on first start. created reports whether a new key was made.
// A disabled key is not replaced: that returns a KindDisabled *Error.
//
// It looks for the key before it writes anything: on every start after the
// first the key is there, and a start on a full disk (or a read-only key
// directory) must not fail for want of room for a key it does not need.
func EnsureLocalKey(dir, name string) (created bool, err error) {
	if err := checkLocalKey(dir, name); !isNotFound(err) {
		return false, err
	}
	if err := CreateLocalKey(dir, name); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		return false, checkLocalKey(dir, name) // another process created it meanwhile
	}
	return true, nil
}

// checkLocalKey reads key dir/name to check it is usable.
func checkLocalKey(dir, name string) error {
	key, err := readLocalKey(dir, name)
	clear(key)
	return err
}

func isNotFound(err error) bool {
	var kerr *Error
	return errors.As(err, &kerr) && kerr.Kind == KindNotFound
}

// DisableLocalKey renames dir/name to dir/name.disabled: wraps and unwraps
// with it fail with KindDisabled until EnableLocalKey.
func DisableLocalKey(dir, name string) error {
	return renameNoReplace(filepath.Join(dir, name), filepath.Join(dir, name+localDisabledSuffix))
}

// EnableLocalKey undoes DisableLocalKey.
func EnableLocalKey(dir, name string) error {
	return renameNoReplace(filepath.Join(dir, name+localDisabledSuffix), filepath.Join(dir, name))
}

// renameNoReplace renames from to to, failing if to exists, so a key file is
// never overwritten.
func renameNoReplace(from, to string) error {
	if err := os.Link(from, to); err != nil {
		return err
	}
	return os.Remove(from)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

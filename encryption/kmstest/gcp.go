package kmstest

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sealcache/sealcache/encryption/kms"
)

// GCPServer is an in-memory Cloud KMS (google.cloud.kms.v1 over plaintext
// gRPC, no authentication) for symmetric ENCRYPT_DECRYPT keys. Implemented
// RPCs: Encrypt, Decrypt, GetCryptoKey, GetCryptoKeyVersion, CreateKeyRing,
// CreateCryptoKey, CreateCryptoKeyVersion, UpdateCryptoKeyPrimaryVersion,
// UpdateCryptoKeyVersion (state ENABLED/DISABLED); others are UNIMPLEMENTED.
//
// Ciphertext: 4-byte big-endian version id || AES-GCM nonce || sealed data,
// with the additional authenticated data as GCM associated data.
type GCPServer struct {
	kmspb.UnimplementedKeyManagementServiceServer

	t   testing.TB
	lis net.Listener
	srv *grpc.Server

	mu      sync.Mutex
	rings   map[string]bool
	keys    map[string]*gcpKey
	revoked map[string]bool // key name -> caller lost its roles on the key
	down    bool
	calls   map[string]int // RPC method name -> count
}

type gcpKey struct {
	name     string
	created  time.Time
	primary  int           // version id of the primary, 0 if none
	versions []*gcpVersion // versions[i] has id i+1
}

type gcpVersion struct {
	id      int
	state   kmspb.CryptoKeyVersion_CryptoKeyVersionState
	created time.Time
	mat     material
}

// NewGCP starts a GCPServer on 127.0.0.1; it stops when the test ends.
func NewGCP(t testing.TB) *GCPServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kmstest: listen: %v", err)
	}
	s := &GCPServer{
		t: t, lis: lis,
		rings: map[string]bool{}, keys: map[string]*gcpKey{}, revoked: map[string]bool{}, calls: map[string]int{},
	}
	s.srv = grpc.NewServer(grpc.UnaryInterceptor(s.intercept))
	kmspb.RegisterKeyManagementServiceServer(s.srv, s)
	go s.srv.Serve(lis)
	t.Cleanup(s.srv.Stop)
	return s
}

// Endpoint is the server's "127.0.0.1:PORT".
func (s *GCPServer) Endpoint() string { return s.lis.Addr().String() }

// Configure points cfg's Cloud KMS settings at this server.
func (s *GCPServer) Configure(cfg *kms.Config) {
	cfg.GCPEndpoint = s.Endpoint()
	cfg.GCPInsecure = true
}

// CreateKey creates the symmetric key keyName
// ("projects/P/locations/L/keyRings/R/cryptoKeys/K"), and its key ring if
// needed, with version 1 as primary. It returns the key's gcp-kms:// URI.
func (s *GCPServer) CreateKey(keyName string) string {
	s.t.Helper()
	parts := strings.Split(keyName, "/")
	if len(parts) != 8 || parts[0] != "projects" || parts[2] != "locations" || parts[4] != "keyRings" || parts[6] != "cryptoKeys" {
		s.t.Fatalf("kmstest: CreateKey(%q): want projects/P/locations/L/keyRings/R/cryptoKeys/K", keyName)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rings[strings.Join(parts[:6], "/")] = true
	if _, err := s.createKeyLocked(keyName, true); err != nil {
		s.t.Fatalf("kmstest: CreateKey: %v", err)
	}
	return "gcp-kms://" + keyName
}

// RotateKey adds a new enabled version to keyName and makes it primary, as
// Cloud KMS rotation does. It returns the new version's name.
func (s *GCPServer) RotateKey(keyName string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[keyName]
	if k == nil {
		s.t.Fatalf("kmstest: RotateKey: no key %s", keyName)
	}
	v := k.addVersion()
	k.primary = v.id
	return k.versionName(v.id)
}

// SetVersionState sets a key version ("…/cryptoKeyVersions/N") to ENABLED or DISABLED.
func (s *GCPServer) SetVersionState(versionName string, state kmspb.CryptoKeyVersion_CryptoKeyVersionState) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.versionLocked(versionName)
	if err != nil {
		s.t.Fatalf("kmstest: SetVersionState: %v", err)
	}
	v.state = state
}

// Revoke takes away the caller's use of keyName (and everything else on it):
// calls fail with PERMISSION_DENIED as if the IAM binding were removed.
func (s *GCPServer) Revoke(keyName string) { s.setRevoked(keyName, true) }

// Grant undoes Revoke.
func (s *GCPServer) Grant(keyName string) { s.setRevoked(keyName, false) }

func (s *GCPServer) setRevoked(keyName string, revoked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked[keyName] = revoked
}

// Down makes every RPC fail with UNAVAILABLE until Up.
func (s *GCPServer) Down() { s.setDown(true) }

// Up ends Down.
func (s *GCPServer) Up() { s.setDown(false) }

func (s *GCPServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Calls counts the RPCs received for method ("Encrypt", "Decrypt", ...), or
// all RPCs if method is "". Calls refused by Down count too.
func (s *GCPServer) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if method != "" {
		return s.calls[method]
	}
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

func (s *GCPServer) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	s.calls[path.Base(info.FullMethod)]++
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, status.Error(codes.Unavailable, "The service is currently unavailable.")
	}
	return handler(ctx, req)
}

// --- RPCs -----------------------------------------------------------------

const gcpMaxData = 64 * 1024 // Cloud KMS limit for plaintext and AAD

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

func checkCRC(field string, data []byte, sum *wrapperspb.Int64Value) (verified bool, err error) {
	if sum == nil {
		return false, nil
	}
	if sum.GetValue() != crc32c(data) {
		return false, status.Errorf(codes.InvalidArgument, "The checksum in field %s did not match the data in field %s.",
			field+"_crc32c", field)
	}
	return true, nil
}

func (s *GCPServer) Encrypt(ctx context.Context, req *kmspb.EncryptRequest) (*kmspb.EncryptResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keyName, versionID := splitVersionName(req.GetName())
	k, err := s.usableKeyLocked(keyName, "cloudkms.cryptoKeyVersions.useToEncrypt", req.GetName())
	if err != nil {
		return nil, err
	}
	if len(req.GetPlaintext()) > gcpMaxData || len(req.GetAdditionalAuthenticatedData()) > gcpMaxData {
		return nil, status.Errorf(codes.InvalidArgument, "The plaintext and additional_authenticated_data must each be at most %d bytes.", gcpMaxData)
	}
	ptOK, err := checkCRC("plaintext", req.GetPlaintext(), req.GetPlaintextCrc32C())
	if err != nil {
		return nil, err
	}
	aadOK, err := checkCRC("additional_authenticated_data", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C())
	if err != nil {
		return nil, err
	}
	if versionID == 0 {
		if k.primary == 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "%s has no primary version.", k.name)
		}
		versionID = k.primary
	}
	v := k.version(versionID)
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "%s not found.", req.GetName())
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		return nil, notEnabled(k.versionName(v.id), v.state)
	}
	ct := binary.BigEndian.AppendUint32(nil, uint32(v.id))
	ct = v.mat.seal(ct, req.GetPlaintext(), req.GetAdditionalAuthenticatedData())
	return &kmspb.EncryptResponse{
		Name:                    k.versionName(v.id),
		Ciphertext:              ct,
		CiphertextCrc32C:        wrapperspb.Int64(crc32c(ct)),
		VerifiedPlaintextCrc32C: ptOK,
		VerifiedAdditionalAuthenticatedDataCrc32C: aadOK,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

func (s *GCPServer) Decrypt(ctx context.Context, req *kmspb.DecryptRequest) (*kmspb.DecryptResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.usableKeyLocked(req.GetName(), "cloudkms.cryptoKeyVersions.useToDecrypt", req.GetName())
	if err != nil {
		return nil, err
	}
	if _, err := checkCRC("ciphertext", req.GetCiphertext(), req.GetCiphertextCrc32C()); err != nil {
		return nil, err
	}
	if _, err := checkCRC("additional_authenticated_data", req.GetAdditionalAuthenticatedData(), req.GetAdditionalAuthenticatedDataCrc32C()); err != nil {
		return nil, err
	}
	badCiphertext := status.Error(codes.InvalidArgument, "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
	ct := req.GetCiphertext()
	if len(ct) < 4 {
		return nil, badCiphertext
	}
	v := k.version(int(binary.BigEndian.Uint32(ct)))
	if v == nil {
		return nil, badCiphertext
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		return nil, notEnabled(k.versionName(v.id), v.state)
	}
	pt, ok := v.mat.open(ct[4:], req.GetAdditionalAuthenticatedData())
	if !ok {
		return nil, badCiphertext
	}
	return &kmspb.DecryptResponse{
		Plaintext:       pt,
		PlaintextCrc32C: wrapperspb.Int64(crc32c(pt)),
		UsedPrimary:     v.id == k.primary,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

func (s *GCPServer) GetCryptoKey(ctx context.Context, req *kmspb.GetCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.usableKeyLocked(req.GetName(), "cloudkms.cryptoKeys.get", req.GetName())
	if err != nil {
		return nil, err
	}
	return k.proto(), nil
}

func (s *GCPServer) GetCryptoKeyVersion(ctx context.Context, req *kmspb.GetCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, v, err := s.versionLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return k.versionProto(v), nil
}

func (s *GCPServer) CreateKeyRing(ctx context.Context, req *kmspb.CreateKeyRingRequest) (*kmspb.KeyRing, error) {
	parts := strings.Split(req.GetParent(), "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "locations" || req.GetKeyRingId() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "invalid parent %q or key ring id %q", req.GetParent(), req.GetKeyRingId())
	}
	name := req.GetParent() + "/keyRings/" + req.GetKeyRingId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rings[name] {
		return nil, status.Errorf(codes.AlreadyExists, "KeyRing %s already exists.", name)
	}
	s.rings[name] = true
	return &kmspb.KeyRing{Name: name, CreateTime: timestamppb.Now()}, nil
}

func (s *GCPServer) CreateCryptoKey(ctx context.Context, req *kmspb.CreateCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	if p := req.GetCryptoKey().GetPurpose(); p != kmspb.CryptoKey_ENCRYPT_DECRYPT {
		return nil, status.Errorf(codes.InvalidArgument, "kmstest supports only purpose ENCRYPT_DECRYPT, not %v", p)
	}
	if req.GetCryptoKeyId() == "" {
		return nil, status.Error(codes.InvalidArgument, "crypto_key_id is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rings[req.GetParent()] {
		return nil, status.Errorf(codes.NotFound, "KeyRing %s not found.", req.GetParent())
	}
	k, err := s.createKeyLocked(req.GetParent()+"/cryptoKeys/"+req.GetCryptoKeyId(), !req.GetSkipInitialVersionCreation())
	if err != nil {
		return nil, err
	}
	return k.proto(), nil
}

func (s *GCPServer) CreateCryptoKeyVersion(ctx context.Context, req *kmspb.CreateCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.keyLocked(req.GetParent())
	if err != nil {
		return nil, err
	}
	// As in Cloud KMS, a new version of a symmetric key does not become
	// primary until UpdateCryptoKeyPrimaryVersion.
	return k.versionProto(k.addVersion()), nil
}

func (s *GCPServer) UpdateCryptoKeyPrimaryVersion(ctx context.Context, req *kmspb.UpdateCryptoKeyPrimaryVersionRequest) (*kmspb.CryptoKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.keyLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	id, _ := strconv.Atoi(req.GetCryptoKeyVersionId())
	v := k.version(id)
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "%s not found.", k.versionName(id))
	}
	if v.state != kmspb.CryptoKeyVersion_ENABLED {
		return nil, notEnabled(k.versionName(id), v.state)
	}
	k.primary = id
	return k.proto(), nil
}

func (s *GCPServer) UpdateCryptoKeyVersion(ctx context.Context, req *kmspb.UpdateCryptoKeyVersionRequest) (*kmspb.CryptoKeyVersion, error) {
	if !slices.Equal(req.GetUpdateMask().GetPaths(), []string{"state"}) {
		return nil, status.Error(codes.InvalidArgument, "kmstest supports only update_mask \"state\"")
	}
	state := req.GetCryptoKeyVersion().GetState()
	if state != kmspb.CryptoKeyVersion_ENABLED && state != kmspb.CryptoKeyVersion_DISABLED {
		return nil, status.Errorf(codes.InvalidArgument, "The state may only be set to ENABLED or DISABLED, not %v.", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, v, err := s.versionLocked(req.GetCryptoKeyVersion().GetName())
	if err != nil {
		return nil, err
	}
	v.state = state
	return k.versionProto(v), nil
}

// --- state helpers (callers hold s.mu) --------------------------------------

func (s *GCPServer) createKeyLocked(name string, withVersion bool) (*gcpKey, error) {
	if _, ok := s.keys[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "CryptoKey %s already exists.", name)
	}
	k := &gcpKey{name: name, created: time.Now()}
	if withVersion {
		k.primary = k.addVersion().id
	}
	s.keys[name] = k
	return k, nil
}

func (s *GCPServer) keyLocked(name string) (*gcpKey, error) {
	k := s.keys[name]
	if k == nil {
		return nil, status.Errorf(codes.NotFound, "%s not found.", name)
	}
	return k, nil
}

// usableKeyLocked finds a key for a data-plane call, enforcing Revoke with
// Cloud KMS's message for the permission the call needs.
func (s *GCPServer) usableKeyLocked(keyName, permission, resource string) (*gcpKey, error) {
	if s.revoked[keyName] {
		return nil, status.Errorf(codes.PermissionDenied,
			"Permission '%s' denied on resource '%s' (or it may not exist).", permission, resource)
	}
	return s.keyLocked(keyName)
}

func (s *GCPServer) versionLocked(versionName string) (*gcpKey, *gcpVersion, error) {
	keyName, id := splitVersionName(versionName)
	if id == 0 {
		return nil, nil, status.Errorf(codes.InvalidArgument, "%q is not a CryptoKeyVersion name", versionName)
	}
	k, err := s.keyLocked(keyName)
	if err != nil {
		return nil, nil, err
	}
	v := k.version(id)
	if v == nil {
		return nil, nil, status.Errorf(codes.NotFound, "%s not found.", versionName)
	}
	return k, v, nil
}

// splitVersionName splits ".../cryptoKeys/K/cryptoKeyVersions/N" into the key
// name and N; a key name is returned whole with id 0.
func splitVersionName(name string) (keyName string, id int) {
	keyName, idStr, ok := strings.Cut(name, "/cryptoKeyVersions/")
	if !ok {
		return name, 0
	}
	id, err := strconv.Atoi(idStr)
	if err != nil || id <= 0 {
		return name, 0
	}
	return keyName, id
}

func notEnabled(versionName string, state kmspb.CryptoKeyVersion_CryptoKeyVersionState) error {
	return status.Errorf(codes.FailedPrecondition, "%s is not enabled, current state is: %v.", versionName, state)
}

func (k *gcpKey) addVersion() *gcpVersion {
	v := &gcpVersion{id: len(k.versions) + 1, state: kmspb.CryptoKeyVersion_ENABLED, created: time.Now(), mat: newMaterial()}
	k.versions = append(k.versions, v)
	return v
}

func (k *gcpKey) version(id int) *gcpVersion {
	if id < 1 || id > len(k.versions) {
		return nil
	}
	return k.versions[id-1]
}

func (k *gcpKey) versionName(id int) string {
	return fmt.Sprintf("%s/cryptoKeyVersions/%d", k.name, id)
}

func (k *gcpKey) versionProto(v *gcpVersion) *kmspb.CryptoKeyVersion {
	return &kmspb.CryptoKeyVersion{
		Name:            k.versionName(v.id),
		State:           v.state,
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
		Algorithm:       kmspb.CryptoKeyVersion_GOOGLE_SYMMETRIC_ENCRYPTION,
		CreateTime:      timestamppb.New(v.created),
		GenerateTime:    timestamppb.New(v.created),
	}
}

func (k *gcpKey) proto() *kmspb.CryptoKey {
	p := &kmspb.CryptoKey{
		Name:       k.name,
		Purpose:    kmspb.CryptoKey_ENCRYPT_DECRYPT,
		CreateTime: timestamppb.New(k.created),
		VersionTemplate: &kmspb.CryptoKeyVersionTemplate{
			ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
			Algorithm:       kmspb.CryptoKeyVersion_GOOGLE_SYMMETRIC_ENCRYPTION,
		},
	}
	if v := k.version(k.primary); v != nil {
		p.Primary = k.versionProto(v)
	}
	return p
}

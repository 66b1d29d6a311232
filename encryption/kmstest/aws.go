package kmstest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sealcache/sealcache/encryption/kms"
)

// AWSServer is an in-memory AWS KMS speaking the AWS JSON 1.1 protocol
// (POST /, X-Amz-Target: TrentService.OP) over plain HTTP, for symmetric
// keys. Every request must carry a valid SigV4 signature for the server's
// access key. Implemented operations: Encrypt, Decrypt, GenerateDataKey,
// DescribeKey, RotateKeyOnDemand; others fail with UnknownOperationException.
//
// Ciphertext blob: 0x01 || len(key id) || key id || 4-byte material version
// || AES-GCM nonce || sealed data. The GCM associated data is the blob
// header plus the canonical encryption context, so the context must match
// on Decrypt.
type AWSServer struct {
	// Region and Account appear in key ARNs; requests must be signed for Region.
	Region  string
	Account string
	// AccessKeyID and SecretAccessKey are the only credentials accepted.
	AccessKeyID     string
	SecretAccessKey string
	// Principal is the caller's IAM ARN, quoted in AccessDeniedException messages.
	Principal string

	t   testing.TB
	srv *httptest.Server

	mu      sync.Mutex
	keys    map[string]*awsKey // by key id
	aliases map[string]string  // "alias/NAME" -> key id
	down    bool
	calls   map[string]int // operation -> count
}

type awsKey struct {
	id        string
	arn       string
	enabled   bool
	revoked   bool
	created   time.Time
	materials []material // index = material version; the last is current
}

// NewAWS starts an AWSServer on 127.0.0.1 in region us-east-1, account
// 111122223333, with fixed test credentials; it stops when the test ends.
func NewAWS(t testing.TB) *AWSServer {
	t.Helper()
	s := &AWSServer{
		Region:          "us-east-1",
		Account:         "111122223333",
		AccessKeyID:     "AKIAKMSTESTKEY000001",
		SecretAccessKey: "kmstest-secret-access-key-not-a-real-one",
		Principal:       "arn:aws:iam::111122223333:user/sealcache-test",
		t:               t,
		keys:            map[string]*awsKey{},
		aliases:         map[string]string{},
		calls:           map[string]int{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP)) // binds 127.0.0.1
	t.Cleanup(s.srv.Close)
	return s
}

// Endpoint is the server's base URL, "http://127.0.0.1:PORT".
func (s *AWSServer) Endpoint() string { return s.srv.URL }

// Configure points cfg's AWS settings (endpoint and credentials) at this server.
func (s *AWSServer) Configure(cfg *kms.Config) {
	cfg.AWSEndpoint = s.Endpoint()
	cfg.AWSAccessKeyID = s.AccessKeyID
	cfg.AWSSecretAccessKey = s.SecretAccessKey
}

// CreateKey creates an enabled symmetric key and returns its ARN
// (arn:aws:kms:REGION:ACCOUNT:key/UUID); its URI is "aws-kms://" + ARN.
func (s *AWSServer) CreateKey() string { return s.createKey(uuid.NewString()) }

// CreateMultiRegionKey is CreateKey with a multi-Region key id (mrk-…).
func (s *AWSServer) CreateMultiRegionKey() string {
	id := make([]byte, 16)
	rand.Read(id)
	return s.createKey("mrk-" + hex.EncodeToString(id))
}

func (s *AWSServer) createKey(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := &awsKey{
		id: id, arn: fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", s.Region, s.Account, id),
		enabled: true, created: time.Now(), materials: []material{newMaterial()},
	}
	s.keys[id] = k
	return k.arn
}

// CreateAlias points alias name ("alias/NAME") at key and returns the alias ARN.
func (s *AWSServer) CreateAlias(name, key string) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.mustKeyLocked(key)
	if !strings.HasPrefix(name, "alias/") {
		s.t.Fatalf("kmstest: alias %q must start with alias/", name)
	}
	s.aliases[name] = k.id
	return fmt.Sprintf("arn:aws:kms:%s:%s:%s", s.Region, s.Account, name)
}

// RotateKey gives key new backing material for Encrypt; ciphertexts made
// with older material still decrypt, as with AWS KMS rotation.
func (s *AWSServer) RotateKey(key string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.mustKeyLocked(key)
	k.materials = append(k.materials, newMaterial())
}

// DisableKey makes Encrypt and Decrypt with key fail with DisabledException.
func (s *AWSServer) DisableKey(key string) { s.setKey(key, func(k *awsKey) { k.enabled = false }) }

// EnableKey undoes DisableKey.
func (s *AWSServer) EnableKey(key string) { s.setKey(key, func(k *awsKey) { k.enabled = true }) }

// Revoke makes every use of key fail with AccessDeniedException, as if the
// key policy stopped allowing the caller.
func (s *AWSServer) Revoke(key string) { s.setKey(key, func(k *awsKey) { k.revoked = true }) }

// Grant undoes Revoke.
func (s *AWSServer) Grant(key string) { s.setKey(key, func(k *awsKey) { k.revoked = false }) }

func (s *AWSServer) setKey(key string, f func(*awsKey)) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.mustKeyLocked(key))
}

func (s *AWSServer) mustKeyLocked(key string) *awsKey {
	k, aerr := s.resolveLocked(key)
	if aerr != nil {
		s.t.Fatalf("kmstest: %s", aerr.Message)
	}
	return k
}

// Down makes every request fail with HTTP 503 until Up.
func (s *AWSServer) Down() { s.setDown(true) }

// Up ends Down.
func (s *AWSServer) Up() { s.setDown(false) }

func (s *AWSServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Calls counts requests received for operation ("Encrypt", "Decrypt", ...),
// or all requests if op is "". Refused and retried requests count too.
func (s *AWSServer) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op != "" {
		return s.calls[op]
	}
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

// --- protocol --------------------------------------------------------------

// awsError is an AWS JSON 1.1 error response.
type awsError struct {
	Status  int
	Type    string
	Message string
}

func (s *AWSServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	op, _ := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	s.mu.Lock()
	s.calls[op]++
	down := s.down
	s.mu.Unlock()
	if down {
		writeAWSError(w, &awsError{http.StatusServiceUnavailable, "ServiceUnavailableException", "Service Unavailable"})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" || !strings.HasPrefix(r.Header.Get("X-Amz-Target"), "TrentService.") {
		writeAWSError(w, &awsError{http.StatusBadRequest, "UnknownOperationException", ""})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeAWSError(w, &awsError{http.StatusBadRequest, "SerializationException", err.Error()})
		return
	}
	if aerr := s.verifySigV4(r, body); aerr != nil {
		writeAWSError(w, aerr)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		writeAWSError(w, &awsError{http.StatusBadRequest, "SerializationException", "unexpected Content-Type " + ct})
		return
	}
	var out any
	var aerr *awsError
	switch op {
	case "Encrypt":
		out, aerr = handle(body, s.encrypt)
	case "Decrypt":
		out, aerr = handle(body, s.decrypt)
	case "GenerateDataKey":
		out, aerr = handle(body, s.generateDataKey)
	case "DescribeKey":
		out, aerr = handle(body, s.describeKey)
	case "RotateKeyOnDemand":
		out, aerr = handle(body, s.rotateKeyOnDemand)
	default:
		aerr = &awsError{http.StatusBadRequest, "UnknownOperationException", ""}
	}
	if aerr != nil {
		writeAWSError(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	json.NewEncoder(w).Encode(out)
}

// handle decodes the request body into In and runs f.
func handle[In, Out any](body []byte, f func(*In) (*Out, *awsError)) (any, *awsError) {
	in := new(In)
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(in); err != nil {
		return nil, &awsError{http.StatusBadRequest, "SerializationException", err.Error()}
	}
	out, aerr := f(in)
	if aerr != nil {
		return nil, aerr
	}
	return out, nil
}

func writeAWSError(w http.ResponseWriter, e *awsError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	w.WriteHeader(e.Status)
	body := map[string]string{"__type": e.Type}
	if e.Message != "" {
		body["message"] = e.Message
	}
	json.NewEncoder(w).Encode(body)
}

// --- operations ------------------------------------------------------------

// Field names follow the AWS KMS API; []byte fields travel as base64.
type encryptInput struct {
	KeyId             *string
	Plaintext         []byte
	EncryptionContext map[string]string
}

type encryptOutput struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionAlgorithm string
}

func (s *AWSServer) encrypt(in *encryptInput) (*encryptOutput, *awsError) {
	if len(in.Plaintext) < 1 || len(in.Plaintext) > 4096 {
		return nil, validationError("plaintext", "Member must have length between 1 and 4096")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, aerr := s.usableKeyLocked(in.KeyId, "kms:Encrypt")
	if aerr != nil {
		return nil, aerr
	}
	return &encryptOutput{CiphertextBlob: k.seal(in.Plaintext, in.EncryptionContext), KeyId: k.arn, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

type decryptInput struct {
	KeyId             *string
	CiphertextBlob    []byte
	EncryptionContext map[string]string
}

type decryptOutput struct {
	KeyId               string
	Plaintext           []byte
	EncryptionAlgorithm string
}

func (s *AWSServer) decrypt(in *decryptInput) (*decryptOutput, *awsError) {
	if len(in.CiphertextBlob) < 1 || len(in.CiphertextBlob) > 6144 {
		return nil, validationError("ciphertextBlob", "Member must have length between 1 and 6144")
	}
	invalid := &awsError{http.StatusBadRequest, "InvalidCiphertextException", ""}
	blobKeyID, version, sealed, ok := parseAWSBlob(in.CiphertextBlob)
	if !ok {
		return nil, invalid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[blobKeyID]
	if in.KeyId != nil {
		named, aerr := s.resolveLocked(*in.KeyId)
		if aerr != nil {
			return nil, aerr
		}
		if k != named {
			return nil, &awsError{http.StatusBadRequest, "IncorrectKeyException",
				"The key ID in the request does not identify a CMK that can perform this operation."}
		}
	}
	if k == nil {
		return nil, invalid
	}
	if aerr := s.checkUseLocked(k, "kms:Decrypt"); aerr != nil {
		return nil, aerr
	}
	if version >= len(k.materials) {
		return nil, invalid
	}
	pt, ok := k.materials[version].open(sealed, awsAAD(in.CiphertextBlob[:len(in.CiphertextBlob)-len(sealed)], in.EncryptionContext))
	if !ok {
		return nil, invalid
	}
	return &decryptOutput{KeyId: k.arn, Plaintext: pt, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

type generateDataKeyInput struct {
	KeyId             *string
	KeySpec           string
	NumberOfBytes     int
	EncryptionContext map[string]string
}

type generateDataKeyOutput struct {
	CiphertextBlob []byte
	Plaintext      []byte
	KeyId          string
}

func (s *AWSServer) generateDataKey(in *generateDataKeyInput) (*generateDataKeyOutput, *awsError) {
	n := in.NumberOfBytes
	switch in.KeySpec {
	case "AES_256":
		n = 32
	case "AES_128":
		n = 16
	case "":
	default:
		return nil, validationError("keySpec", "Member must satisfy enum value set: [AES_256, AES_128]")
	}
	if n < 1 || n > 1024 {
		return nil, &awsError{http.StatusBadRequest, "ValidationException", "Please specify either number of bytes or key spec."}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, aerr := s.usableKeyLocked(in.KeyId, "kms:GenerateDataKey")
	if aerr != nil {
		return nil, aerr
	}
	pt := make([]byte, n)
	rand.Read(pt)
	return &generateDataKeyOutput{CiphertextBlob: k.seal(pt, in.EncryptionContext), Plaintext: pt, KeyId: k.arn}, nil
}

type keyIDInput struct{ KeyId *string }

type keyMetadata struct {
	AWSAccountId          string
	KeyId                 string
	Arn                   string
	CreationDate          float64 // epoch seconds
	Enabled               bool
	KeyState              string
	KeyUsage              string
	KeySpec               string
	CustomerMasterKeySpec string
	KeyManager            string
	Origin                string
	MultiRegion           bool
	EncryptionAlgorithms  []string
	Description           string
}

type describeKeyOutput struct{ KeyMetadata keyMetadata }

func (s *AWSServer) describeKey(in *keyIDInput) (*describeKeyOutput, *awsError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, aerr := s.resolveIDLocked(in.KeyId)
	if aerr != nil {
		return nil, aerr
	}
	if k.revoked {
		return nil, s.accessDenied("kms:DescribeKey", k)
	}
	state := "Enabled"
	if !k.enabled {
		state = "Disabled"
	}
	return &describeKeyOutput{keyMetadata{
		AWSAccountId: s.Account, KeyId: k.id, Arn: k.arn,
		CreationDate: float64(k.created.UnixMilli()) / 1000, Enabled: k.enabled, KeyState: state,
		KeyUsage: "ENCRYPT_DECRYPT", KeySpec: "SYMMETRIC_DEFAULT", CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
		KeyManager: "CUSTOMER", Origin: "AWS_KMS", MultiRegion: strings.HasPrefix(k.id, "mrk-"),
		EncryptionAlgorithms: []string{"SYMMETRIC_DEFAULT"},
	}}, nil
}

type rotateOutput struct{ KeyId string }

func (s *AWSServer) rotateKeyOnDemand(in *keyIDInput) (*rotateOutput, *awsError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, aerr := s.usableKeyLocked(in.KeyId, "kms:RotateKeyOnDemand")
	if aerr != nil {
		return nil, aerr
	}
	k.materials = append(k.materials, newMaterial())
	return &rotateOutput{KeyId: k.arn}, nil
}

// --- keys ------------------------------------------------------------------

func validationError(field, constraint string) *awsError {
	return &awsError{http.StatusBadRequest, "ValidationException",
		fmt.Sprintf("1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint)}
}

// usableKeyLocked resolves a KeyId for an operation that uses the key.
func (s *AWSServer) usableKeyLocked(keyID *string, action string) (*awsKey, *awsError) {
	k, aerr := s.resolveIDLocked(keyID)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkUseLocked(k, action); aerr != nil {
		return nil, aerr
	}
	return k, nil
}

// checkUseLocked applies Revoke, then the key state, in AWS's order.
func (s *AWSServer) checkUseLocked(k *awsKey, action string) *awsError {
	if k.revoked {
		return s.accessDenied(action, k)
	}
	if !k.enabled {
		return &awsError{http.StatusConflict, "DisabledException", k.arn + " is disabled."}
	}
	return nil
}

func (s *AWSServer) accessDenied(action string, k *awsKey) *awsError {
	return &awsError{http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf(
		"User: %s is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action",
		s.Principal, action, k.arn, action)}
}

func (s *AWSServer) resolveIDLocked(keyID *string) (*awsKey, *awsError) {
	if keyID == nil || *keyID == "" {
		return nil, validationError("keyId", "Member must not be null")
	}
	return s.resolveLocked(*keyID)
}

// resolveLocked finds a key by key id, key ARN, alias name or alias ARN.
func (s *AWSServer) resolveLocked(keyID string) (*awsKey, *awsError) {
	id := keyID
	if rest, ok := strings.CutPrefix(keyID, "arn:"); ok {
		parts := strings.SplitN(rest, ":", 5) // partition, service, region, account, resource
		if len(parts) != 5 || parts[1] != "kms" {
			return nil, &awsError{http.StatusBadRequest, "InvalidArnException", "Invalid arn " + keyID}
		}
		if parts[2] != s.Region || parts[3] != s.Account {
			return nil, &awsError{http.StatusNotFound, "NotFoundException", fmt.Sprintf("Key '%s' does not exist", keyID)}
		}
		id = parts[4]
	}
	if strings.HasPrefix(id, "alias/") {
		target, ok := s.aliases[id]
		if !ok {
			return nil, &awsError{http.StatusNotFound, "NotFoundException",
				fmt.Sprintf("Alias arn:aws:kms:%s:%s:%s is not found.", s.Region, s.Account, id)}
		}
		id = target
	}
	id = strings.TrimPrefix(id, "key/")
	k := s.keys[id]
	if k == nil {
		return nil, &awsError{http.StatusNotFound, "NotFoundException",
			fmt.Sprintf("Key 'arn:aws:kms:%s:%s:key/%s' does not exist", s.Region, s.Account, id)}
	}
	return k, nil
}

const awsBlobV1 = 1

// seal encrypts with the key's current material.
func (k *awsKey) seal(plaintext []byte, encryptionContext map[string]string) []byte {
	version := len(k.materials) - 1
	header := []byte{awsBlobV1, byte(len(k.id))}
	header = append(header, k.id...)
	header = binary.BigEndian.AppendUint32(header, uint32(version))
	return k.materials[version].seal(header, plaintext, awsAAD(header, encryptionContext))
}

// parseAWSBlob splits a ciphertext blob into its key id, material version
// and sealed part.
func parseAWSBlob(blob []byte) (keyID string, version int, sealed []byte, ok bool) {
	if len(blob) < 2 || blob[0] != awsBlobV1 {
		return "", 0, nil, false
	}
	n := int(blob[1])
	if len(blob) < 2+n+4 {
		return "", 0, nil, false
	}
	return string(blob[2 : 2+n]), int(binary.BigEndian.Uint32(blob[2+n:])), blob[2+n+4:], true
}

// awsAAD binds the blob header and the encryption context, canonically
// ordered and length-prefixed so no two contexts encode alike.
func awsAAD(header []byte, encryptionContext map[string]string) []byte {
	aad := append([]byte(nil), header...)
	keys := make([]string, 0, len(encryptionContext))
	for k := range encryptionContext {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(k)))
		aad = append(aad, k...)
		aad = binary.BigEndian.AppendUint32(aad, uint32(len(encryptionContext[k])))
		aad = append(aad, encryptionContext[k]...)
	}
	return aad
}

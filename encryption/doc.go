// Package encryption seals an org's cache data with a key only the org's
// KMS key and the operator's KMS key together can produce (CMEK).
//
// Key hierarchy, per org and key id:
//
//	customer key  32 random bytes, stored wrapped by the customer's KMS key
//	operator key  32 random bytes, stored wrapped by the operator's KMS key
//	derived key   HKDF-Expand(SHA-256, customer || operator, info), 32 bytes
//
// Both halves are wrapped with the org id as associated data. The derived
// key exists only in memory, in KeyProvider's cache, for at most the TTL.
//
// The parts:
//
//	DeriveKey    the HKDF step (derive.go)
//	KeyProvider  the org's current key: key record lookup, KMS unwrap, cache (provider.go)
//	Store        a cas.BlobStore that seals on Put and opens on Get (store.go)
//	Manager      enable, disable, check and re-wrap an org's key (manager.go)
//	ShredCheck   proves an org's sealed data no longer opens (shred.go)
//
// The byte format of a sealed object is in package encryption/stream.
package encryption

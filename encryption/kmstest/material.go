// Package kmstest runs stand-ins for Cloud KMS and AWS KMS on 127.0.0.1 that
// speak the real wire protocols (gRPC google.cloud.kms.v1 and AWS JSON 1.1
// with SigV4), so the providers' official SDK clients can be tested end to
// end, errors included. Keys live in memory; each key version (GCP) or
// backing key (AWS) has its own random AES-256-GCM material, and ciphertexts
// name the version that made them, so rotation and disabling behave as in
// the real services.
//
// Go controls (Revoke, Down, RotateKey, ...) stand in for what an admin would
// do in the provider's console.
package kmstest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
)

// material is one key version's secret: AES-256-GCM with random nonces.
type material struct{ aead cipher.AEAD }

func newMaterial() material {
	key := make([]byte, 32)
	defer clear(key)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // 32-byte keys are always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return material{aead}
}

// seal appends nonce || ciphertext to dst.
func (m material) seal(dst, plaintext, aad []byte) []byte {
	nonce := make([]byte, m.aead.NonceSize())
	rand.Read(nonce)
	dst = append(dst, nonce...)
	return m.aead.Seal(dst, nonce, plaintext, aad)
}

// open reverses seal; ok is false for any tampering or wrong aad.
func (m material) open(sealed, aad []byte) ([]byte, bool) {
	n := m.aead.NonceSize()
	if len(sealed) < n+m.aead.Overhead() {
		return nil, false
	}
	out, err := m.aead.Open(nil, sealed[:n], sealed[n:], aad)
	return out, err == nil
}

// Package pki holds qinfra's certificate authority, the certificates it
// issues and the TLS configurations built on them.
//
// A host's identity lives in its client certificate and nowhere else. It is
// written by exactly one function, [HostIdentityToTemplate], and read back by
// exactly one, [HostIDFromVerifiedCert]; no other code may put a host ID into
// a certificate or take one out of a certificate, a message field or a
// request. Keeping the conversion in one pair of functions means the rules
// for what a valid identity looks like cannot drift between the issuer and
// the verifier.
//
// Only the standard library's crypto is used. Keys that this package
// generates are ECDSA P-256; TLS is 1.3 only.
package pki

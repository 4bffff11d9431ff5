// Package sds is the mesh's certificate authority: it reads a trust anchor
// bundle and an issuer (intermediate CA) from Kubernetes in cert-manager's
// shape, validates them, follows their renewal without a restart, and signs
// short-lived SPIFFE leaves (spiffe://<trust-domain>/ns/<ns>/sa/<sa>) for
// authenticated workloads.
//
// Keys: a workload's private key is made where it is used. Proxies (or
// grpc-go certificate providers) send a CSR and get back only the identity
// their stream proved, whatever the CSR asked for (SignCSR). Where the key
// must be made here (the control plane's own serving certificate, or SDS
// delivery over the TLS-protected xDS stream) IssueKeyPair makes it in
// memory; no key is ever written to a Kubernetes object.
//
// The package knows nothing of the xDS server: cmd/cp wires a CA and a
// Watcher into it (see docs/identity.md).
package sds

package sds

import (
	"crypto/tls"
	"fmt"
	"math/big"
	"sync"
)

// ServingCertificate is the control plane's own certificate for the xDS
// port, from the same CA as the workloads, so Envoy and grpc-go verify the
// control plane against the bundle they already have. It renews itself on
// the handshake after its renewal time, or after the issuer changed.
type ServingCertificate struct {
	ca       *CA
	workload Workload
	dnsNames []string

	mu     sync.Mutex
	cert   *tls.Certificate
	leaf   *Leaf
	issuer *big.Int // serial of the issuer that signed cert
}

// NewServingCertificate serves as workload w (the control plane's
// ServiceAccount) with the given DNS names (its Service's names).
func (ca *CA) NewServingCertificate(w Workload, dnsNames ...string) *ServingCertificate {
	return &ServingCertificate{ca: ca, workload: w, dnsNames: dnsNames}
}

// GetCertificate is tls.Config.GetCertificate. While the CA cannot issue it
// keeps returning the last certificate until that expires.
func (s *ServingCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.ca.now()
	// Only the issuer's serial is needed on this per-handshake path, not
	// the whole Status (strings formatted, slices copied).
	issuer := s.ca.issuerSerial()
	if s.cert != nil && now.Before(s.leaf.RenewAt) && sameSerial(issuer, s.issuer) {
		return s.cert, nil
	}
	leaf, err := s.ca.issueKeyPair(s.workload, s.dnsNames...)
	if err != nil {
		if s.cert != nil && now.Before(s.leaf.NotAfter) {
			return s.cert, nil
		}
		return nil, fmt.Errorf("serving certificate for %s: %w", s.workload, err)
	}
	cert, err := tls.X509KeyPair(leaf.CertChainPEM, leaf.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("serving certificate for %s: %w", s.workload, err)
	}
	s.cert, s.leaf, s.issuer = &cert, leaf, issuer
	return s.cert, nil
}

// sameSerial is whether a and b are the same serial, nil (no issuer) equal
// only to nil.
func sameSerial(a, b *big.Int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Cmp(b) == 0
}

// ServerTLSConfig is the xDS port's TLS: the serving certificate, and
// client certificates verified against the current bundle when a client
// sends one (proxies authenticate with their token; a client certificate
// is optional so a proxy can fetch its first one).
func (ca *CA) ServerTLSConfig(sc *ServingCertificate) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: sc.GetCertificate, NextProtos: []string{"h2"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool, err := ca.BundlePool()
		if err != nil {
			return nil, fmt.Errorf("xDS TLS: %w", err)
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		return c, nil
	}
	return base
}

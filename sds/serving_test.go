package sds

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// handshake runs one TLS handshake over a pipe and returns the server's
// leaf as the client saw it.
func handshake(t *testing.T, server *tls.Config, roots *x509.CertPool, serverName string) (*x509.Certificate, error) {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	srvErr := make(chan error, 1)
	go func() { srvErr <- tls.Server(s, server).Handshake() }()
	cl := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: serverName, NextProtos: []string{"h2"}})
	err := cl.Handshake()
	c.Close()
	<-srvErr
	if err != nil {
		return nil, err
	}
	return cl.ConnectionState().PeerCertificates[0], nil
}

func TestServingCertificateFollowsTheIssuer(t *testing.T) {
	now := time.Now()
	tr := newTrust(t, now, 72*time.Hour, 48*time.Hour)
	ca := newTestCA(t, time.Now, time.Hour)
	ca.SetMaterial(tr.material(t, now), nil)
	sc := ca.NewServingCertificate(Workload{"weft-system", "weft-cp"}, "weft-cp.weft-system.svc")
	cfg := ca.ServerTLSConfig(sc)
	roots := x509.NewCertPool()
	roots.AddCert(tr.anchor.Cert)

	first, err := handshake(t, cfg, roots, "weft-cp.weft-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	if len(first.URIs) != 1 || first.URIs[0].String() != "spiffe://cluster.local/ns/weft-system/sa/weft-cp" {
		t.Errorf("serving certificate URIs %v", first.URIs)
	}
	if _, err := handshake(t, cfg, roots, "evil.example"); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}
	again, err := handshake(t, cfg, roots, "weft-cp.weft-system.svc")
	if err != nil || !again.Equal(first) {
		t.Fatalf("second handshake re-issued (or failed: %v) before renewal was due", err)
	}
	renewed, err := NewIssuer(td.Name(), tr.anchor, now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMaterial("Secret test/issuer", []*x509.Certificate{renewed.Cert}, renewed.Key, []*x509.Certificate{tr.anchor.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	ca.SetMaterial(m, nil)
	after, err := handshake(t, cfg, roots, "weft-cp.weft-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	if string(after.AuthorityKeyId) != string(renewed.Cert.SubjectKeyId) {
		t.Error("serving certificate not re-issued by the renewed issuer")
	}
}

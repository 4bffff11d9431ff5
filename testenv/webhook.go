package testenv

import (
	"crypto/tls"
	"encoding/pem"
	"net"
	"net/http"
	"testing"
	"time"
)

// Webhook is an HTTPS server on 127.0.0.1 that the apiserver can call as an admission
// webhook: URL goes in a webhook configuration's clientConfig.url (plus a path), CABundle in
// its caBundle. The apiserver verifies webhooks by certificate, so a plain httptest server
// will not do: its certificate is not for a CA the test can hand over.
type Webhook struct {
	URL      string // https://127.0.0.1:<port>, no trailing slash
	CABundle []byte // PEM of the CA that signed the serving certificate
}

// ServeWebhook serves h over TLS on a free loopback port until the test ends.
func ServeWebhook(t testing.TB, h http.Handler) Webhook {
	t.Helper()
	cert, caPEM, err := loopbackServingCert()
	if err != nil {
		t.Fatalf("webhook certificate: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("webhook listener: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return Webhook{URL: "https://" + ln.Addr().String(), CABundle: caPEM}
}

// loopbackServingCert makes a throwaway CA and a serving certificate for 127.0.0.1 and
// localhost signed by it.
func loopbackServingCert() (tls.Certificate, []byte, error) {
	caCert, caKey, err := newCA("weft-testenv-webhook-ca")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	der, key, err := newServingCert(caCert, caKey, "weft-testenv-webhook", 24*time.Hour,
		[]net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), nil
}

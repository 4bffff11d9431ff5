package sds

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestEnvoySecrets(t *testing.T) {
	now := time.Now()
	tr := newTrust(t, now, 72*time.Hour, 48*time.Hour)
	ca := newTestCA(t, time.Now, 0)
	ca.SetMaterial(tr.material(t, now), nil)
	leaf, err := ca.IssueKeyPair(Workload{"x", "a"})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := EnvoySecrets(leaf, ca.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 2 || secrets[0].GetName() != WorkloadSecretName || secrets[1].GetName() != BundleSecretName {
		t.Fatalf("secrets %v", secrets)
	}
	for _, s := range secrets {
		if err := s.Validate(); err != nil {
			t.Errorf("%s does not validate: %v", s.GetName(), err)
		}
	}
	tc := secrets[0].GetTlsCertificate()
	if _, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes()); err != nil {
		t.Errorf("workload secret is not a usable key pair: %v", err)
	}
	verifyLeaf(t, tc.GetCertificateChain().GetInlineBytes(), tr.anchor.Cert, now)
	if string(secrets[1].GetValidationContext().GetTrustedCa().GetInlineBytes()) != string(tr.anchor.CertPEM) {
		t.Error("validation context is not the bundle")
	}

	_, der := csr(t, "")
	signed, err := ca.SignCSR(Workload{"x", "a"}, der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnvoySecrets(signed, ca.Bundle()); err == nil {
		t.Error("SDS secrets built from a leaf without its key")
	}
}

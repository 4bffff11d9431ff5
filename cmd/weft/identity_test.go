package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/sds"
)

// runGenerate runs `weft identity generate args...` and decodes its two
// documents.
func runGenerate(t *testing.T, args ...string) (*corev1.Secret, *corev1.ConfigMap, error) {
	t.Helper()
	cmd := newRootCommand(func(string) string { return "" }, time.Now)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(append([]string{"identity", "generate"}, args...))
	if err := cmd.Execute(); err != nil {
		return nil, nil, err
	}
	docs := strings.Split(strings.TrimPrefix(out.String(), "---\n"), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2:\n%s", len(docs), out.String())
	}
	var s corev1.Secret
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &s); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &cm); err != nil {
		t.Fatal(err)
	}
	return &s, &cm, nil
}

// accept checks the objects the way the control plane reads them.
func accept(t *testing.T, s *corev1.Secret, cm *corev1.ConfigMap, bundleKey string) *sds.Material {
	t.Helper()
	if s.Kind != "Secret" || s.Type != corev1.SecretTypeTLS || cm.Kind != "ConfigMap" {
		t.Fatalf("kinds %s (%s) and %s", s.Kind, s.Type, cm.Kind)
	}
	chain, key, _, err := sds.ParseIssuerSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	anchors, _, err := sds.ParseBundle(cm, bundleKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, err := sds.NewMaterial("Secret", chain, key, anchors, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cm.Data[bundleKey], "PRIVATE KEY") || bytes.Count(s.Data["tls.key"], []byte("PRIVATE KEY-----")) != 2 {
		t.Error("a key other than the issuer's is in the output")
	}
	return m
}

func TestIdentityGenerate(t *testing.T) {
	dir := t.TempDir()
	keyOut := filepath.Join(dir, "anchor.key")
	s, cm, err := runGenerate(t, "--namespace", "mesh", "--issuer-secret", "iss", "--bundle", "b", "--trust-domain", "example.org",
		"--issuer-validity", "48h", "--anchor-key-out", keyOut)
	if err != nil {
		t.Fatal(err)
	}
	if s.Namespace != "mesh" || s.Name != "iss" || cm.Namespace != "mesh" || cm.Name != "b" {
		t.Errorf("names: Secret %s/%s ConfigMap %s/%s", s.Namespace, s.Name, cm.Namespace, cm.Name)
	}
	m := accept(t, s, cm, sds.DefaultBundleKey)
	if d := time.Until(m.Issuer.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("issuer lives %s, want 48h", d)
	}
	fi, err := os.Stat(keyOut)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("anchor key file: %v %v", fi, err)
	}
	if bytes.Contains(s.Data["tls.key"], mustRead(t, keyOut)) {
		t.Error("the anchor key is in the Secret")
	}

	// A new issuer under the kept anchor is accepted by the old bundle.
	certOut := filepath.Join(dir, "anchor.crt")
	if err := os.WriteFile(certOut, s.Data["ca.crt"], 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _, err := runGenerate(t, "--anchor-cert", certOut, "--anchor-key", keyOut)
	if err != nil {
		t.Fatal(err)
	}
	m2 := accept(t, s2, cm, sds.DefaultBundleKey)
	if m2.Issuer.Equal(m.Issuer) || !bytes.Equal(m2.Issuer.AuthorityKeyId, m.Issuer.AuthorityKeyId) {
		t.Error("second issuer is not a new issuer under the same anchor")
	}

	if _, _, err := runGenerate(t, "--anchor-cert", certOut); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("--anchor-cert alone: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

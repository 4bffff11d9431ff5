package charts

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden renders in testdata")

// render renders the embedded chart offline with values and decodes it.
func render(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	manifest, err := Render(context.Background(), Options{Values: vals})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.Decode([]byte(manifest))
	if err != nil {
		t.Fatalf("decoding the rendered manifest: %v", err)
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("the render has no %s %s", kind, name)
}

func haValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := ValuesFile(HAValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLint is `helm lint` (Helm's lint package) on the chart directory, with
// the default and the HA values: nothing above INFO.
func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{"default": nil, "ha": haValues(t)} {
		t.Run(name, func(t *testing.T) {
			l := lint.All("weft", vals, Namespace, false)
			for _, m := range l.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// generated are the values of the chart's generated certificates and keys:
// new on every render, so the golden files show a placeholder.
var generated = map[string]bool{"ca.crt": true, "tls.crt": true, "tls.key": true, "caBundle": true}

// normalize makes a render comparable across runs: generated material
// becomes <generated>, and the CRDs' schemas (deploy/crds, thousands of
// lines, checked by TestChartCRDsAreDeployCRDs) a reference to their file.
func normalize(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var out bytes.Buffer
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && generated[k] && s != "" {
					v[k] = "<generated>"
					continue
				}
				v[k] = walk(e)
			}
		case []any:
			for i := range v {
				v[i] = walk(v[i])
			}
		}
		return v
	}
	for _, o := range objs {
		o = o.DeepCopy()
		if o.GetKind() == "CustomResourceDefinition" {
			o.Object["spec"] = "<files/crds/" + o.GetName() + ".yaml>"
		}
		if cm := o.Object["data"]; o.GetKind() == "ConfigMap" && cm != nil {
			o.Object["data"] = map[string]any{sds.DefaultBundleKey: "<generated>"}
		}
		data, err := yaml.Marshal(walk(o.Object))
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(data)
	}
	return out.Bytes()
}

// TestRenderGolden is `helm template` of the default and the HA values, and
// of certificates from cert-manager, so a chart change shows in review:
// go test ./deploy/charts -run Golden -update.
func TestRenderGolden(t *testing.T) {
	certManager := map[string]any{"certManager": map[string]any{"enabled": true}, "identity": map[string]any{"source": "certManager"}}
	for name, vals := range map[string]map[string]any{"default": nil, "ha": haValues(t), "certmanager": certManager} {
		t.Run(name, func(t *testing.T) {
			got := normalize(t, render(t, vals))
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("render of %s values differs from %s (run with -update if intended)", name, path)
			}
		})
	}
}

// TestBadValuesFailAtRender: invalid values stop the render, before anything
// is applied, with a message naming the value.
func TestBadValuesFailAtRender(t *testing.T) {
	cases := []struct {
		name string
		vals map[string]any
		want string
	}{
		{"negative replicas", map[string]any{"replicas": -1}, "at '/replicas': minimum: got -1, want 0"},
		{"unknown proxy log level", map[string]any{"proxy": map[string]any{"logLevel": "loud"}}, "at '/proxy/logLevel': value must be one of"},
		{"proxy memory not a quantity", map[string]any{"proxy": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "lots"}}}}, "at '/proxy/resources/limits/memory'"},
		{"malformed issuer PEM", map[string]any{"identity": map[string]any{"source": "values", "issuer": map[string]any{"crtPEM": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"}}}, "at '/identity/issuer/crtPEM'"},
		{"issuer key not PEM", map[string]any{"identity": map[string]any{"issuer": map[string]any{"keyPEM": "secret"}}}, "at '/identity/issuer/keyPEM'"},
		{"misspelt key", map[string]any{"replica": 3}, "additional properties 'replica' not allowed"},
		{"unknown identity source", map[string]any{"identity": map[string]any{"source": "vault"}}, "at '/identity/source'"},
		{"external issuer not an issuer", map[string]any{"identity": map[string]any{"externalIssuer": "Certificate/x"}}, "at '/identity/externalIssuer'"},
		{"cert-manager source without cert-manager", map[string]any{"identity": map[string]any{"source": "certManager"}}, "identity.source: certManager requires certManager.enabled: true"},
		{"values source without the PEMs", map[string]any{"identity": map[string]any{"source": "values"}}, "identity.source: values requires identity.issuer.crtPEM"},
		{"budget blocks every drain", map[string]any{"replicas": 2, "podDisruptionBudget": map[string]any{"enabled": true, "minAvailable": 2}}, "podDisruptionBudget.minAvailable 2: must be below replicas (2)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Values: tc.vals})
			if err == nil {
				t.Fatalf("rendered; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}

// TestGeneratedMaterial: what the chart generates is what the control plane
// and the apiserver accept: an ECDSA P-256 CA that sds takes as issuer and
// anchor, and a webhook serving certificate that verifies, for the
// Service's name, against the caBundle of both webhook configurations.
func TestGeneratedMaterial(t *testing.T) {
	objs := render(t, nil)
	var issuer, webhookTLS corev1.Secret
	var bundle corev1.ConfigMap
	find(t, objs, "Secret", "weft-identity-issuer", &issuer)
	find(t, objs, "ConfigMap", "weft-trust-bundle", &bundle)
	find(t, objs, "Secret", "weft-webhook-tls", &webhookTLS)

	now := time.Now()
	chain, key, _, err := sds.ParseIssuerSecret(&issuer)
	if err != nil {
		t.Fatalf("sds refuses the generated issuer: %v", err)
	}
	anchors, skipped, err := sds.ParseBundle(&bundle, sds.DefaultBundleKey, now)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("sds refuses the generated bundle: %v (skipped %v)", err, skipped)
	}
	if _, err := sds.NewMaterial("Secret weft-system/weft-identity-issuer", chain, key, anchors, now); err != nil {
		t.Fatalf("the generated issuer and bundle do not make trust material: %v", err)
	}

	var mutating admissionregistrationv1.MutatingWebhookConfiguration
	var validating admissionregistrationv1.ValidatingWebhookConfiguration
	find(t, objs, "MutatingWebhookConfiguration", "weft-proxy-injector", &mutating)
	find(t, objs, "ValidatingWebhookConfiguration", "weft-profile-validator", &validating)
	block, _ := pem.Decode(webhookTLS.Data[corev1.TLSCertKey])
	if block == nil {
		t.Fatal("weft-webhook-tls: tls.crt is not PEM")
	}
	serving, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for name, caBundle := range map[string][]byte{
		"weft-proxy-injector": mutating.Webhooks[0].ClientConfig.CABundle, "weft-profile-validator": validating.Webhooks[0].ClientConfig.CABundle,
	} {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			t.Fatalf("%s: caBundle holds no certificate", name)
		}
		for _, dns := range []string{"weft-cp.weft-system.svc", "weft-cp.weft-system.svc.cluster.local"} {
			if _, err := serving.Verify(x509.VerifyOptions{DNSName: dns, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("%s: the serving certificate does not verify for %s against the caBundle: %v", name, dns, err)
			}
		}
	}
}

// TestInjectorWebhookIsInjectors: the chart registers the injection webhook
// exactly as injector.WebhookConfiguration describes it.
func TestInjectorWebhookIsInjectors(t *testing.T) {
	var got admissionregistrationv1.MutatingWebhookConfiguration
	find(t, render(t, nil), "MutatingWebhookConfiguration", "weft-proxy-injector", &got)
	want := injector.WebhookConfiguration("weft-proxy-injector", Namespace, got.Webhooks[0].ClientConfig)
	if !apiequality.Semantic.DeepEqual(got.Webhooks, want.Webhooks) {
		t.Errorf("chart's webhook\n%+v\ninjector.WebhookConfiguration\n%+v", got.Webhooks, want.Webhooks)
	}
	if svc := got.Webhooks[0].ClientConfig.Service; svc == nil || svc.Name != "weft-cp" || svc.Path == nil || *svc.Path != injector.InjectPath {
		t.Errorf("clientConfig.service %+v: want weft-cp, path %s", svc, injector.InjectPath)
	}
}

// TestChartCRDsAreDeployCRDs: the chart carries deploy/crds unchanged (a
// chart cannot read files outside its directory).
func TestChartCRDsAreDeployCRDs(t *testing.T) {
	src, err := filepath.Glob("../crds/*.yaml")
	if err != nil || len(src) == 0 {
		t.Fatalf("no CRDs in deploy/crds: %v", err)
	}
	for _, s := range src {
		want, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := files.ReadFile("weft/files/crds/" + filepath.Base(s))
		if err != nil {
			t.Errorf("the chart lacks %s: %v", filepath.Base(s), err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("weft/files/crds/%s differs from %s: cp deploy/crds/*.yaml deploy/charts/weft/files/crds/", filepath.Base(s), s)
		}
	}
}

// TestCRDsOnly: --crds renders the two CRDs and nothing else.
func TestCRDsOnly(t *testing.T) {
	manifest, err := Render(context.Background(), Options{CRDsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := testenv.Decode([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	want := "CustomResourceDefinition/serviceprofiles.linkerd.io CustomResourceDefinition/trafficsplits.split.smi-spec.io"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("rendered %s, want %s", got, want)
	}
}

// TestIdentityFromValues: identity.source=values puts the given issuer and
// anchors, unchanged, where the control plane reads them, and sds accepts
// them as trust material.
func TestIdentityFromValues(t *testing.T) {
	now := time.Now()
	anchor, err := sds.NewAnchor("cluster.local", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sds.NewIssuer("cluster.local", anchor, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, map[string]any{"identity": map[string]any{
		"source": "values", "trustAnchorsPEM": string(anchor.CertPEM),
		"issuer": map[string]any{"crtPEM": string(issuer.CertPEM), "keyPEM": string(issuer.KeyPEM)},
	}})
	var secret corev1.Secret
	var bundle corev1.ConfigMap
	find(t, objs, "Secret", "weft-identity-issuer", &secret)
	find(t, objs, "ConfigMap", "weft-trust-bundle", &bundle)
	for key, want := range map[string][]byte{"tls.crt": issuer.CertPEM, "tls.key": issuer.KeyPEM, "ca.crt": anchor.CertPEM} {
		if !bytes.Equal(secret.Data[key], want) {
			t.Errorf("Secret weft-identity-issuer %s:\n%s\nwant the value given:\n%s", key, secret.Data[key], want)
		}
	}
	chain, key, _, err := sds.ParseIssuerSecret(&secret)
	if err != nil {
		t.Fatal(err)
	}
	anchors, _, err := sds.ParseBundle(&bundle, sds.DefaultBundleKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(anchors) != 1 || !anchors[0].Equal(anchor.Cert) {
		t.Errorf("bundle anchors %d, want exactly the given anchor", len(anchors))
	}
	if _, err := sds.NewMaterial("Secret weft-system/weft-identity-issuer", chain, key, anchors, now); err != nil {
		t.Errorf("the issuer given in values does not chain to the anchors given: %v", err)
	}
}

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/sds"
)

// identityFlags are `weft identity generate`'s flags.
type identityFlags struct {
	trustDomain    string
	namespace      string
	secret         string
	bundle         string
	bundleKey      string
	anchorValidity time.Duration
	issuerValidity time.Duration
	anchorKeyOut   string
	anchorCert     string
	anchorKey      string
}

func newIdentityCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Manage the mesh's trust anchor and issuer",
	}
	cmd.AddCommand(newIdentityGenerateCommand(time.Now))
	return cmd
}

func newIdentityGenerateCommand(now func() time.Time) *cobra.Command {
	f := &identityFlags{}
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write a fresh trust anchor and issuer as Kubernetes YAML (for installs without cert-manager)",
		Long: `generate writes two objects to stdout, ready for kubectl apply:

  - the issuer Secret (type kubernetes.io/tls: tls.crt, tls.key, ca.crt), the shape
    cert-manager writes for a Certificate signed by a CA Issuer;
  - the trust bundle ConfigMap holding the anchor certificate.

The anchor's private key is not written to either: without --anchor-key-out it is
discarded, and the next issuer comes with a new anchor added to the bundle beside the
old one (rotation by overlap). With --anchor-key-out it is kept in a local file (0600),
and --anchor-cert/--anchor-key sign a new issuer under that anchor later.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return generateIdentity(cmd.OutOrStdout(), f, now())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain")
	fl.StringVar(&f.namespace, "namespace", "weft-system", "namespace of the control plane")
	fl.StringVar(&f.secret, "issuer-secret", "weft-identity-issuer", "name of the issuer Secret")
	fl.StringVar(&f.bundle, "bundle", "weft-trust-bundle", "name of the trust bundle ConfigMap")
	fl.StringVar(&f.bundleKey, "bundle-key", sds.DefaultBundleKey, "key of the anchors in the bundle ConfigMap")
	fl.DurationVar(&f.anchorValidity, "anchor-validity", 10*365*24*time.Hour, "lifetime of a new anchor")
	fl.DurationVar(&f.issuerValidity, "issuer-validity", 365*24*time.Hour, "lifetime of the issuer (cut to the anchor's)")
	fl.StringVar(&f.anchorKeyOut, "anchor-key-out", "", "keep the new anchor's key in this local file (never apply it to the cluster)")
	fl.StringVar(&f.anchorCert, "anchor-cert", "", "sign the issuer with this existing anchor (PEM certificate) instead of a new one")
	fl.StringVar(&f.anchorKey, "anchor-key", "", "the existing anchor's key (PEM), with --anchor-cert")
	return cmd
}

func generateIdentity(w io.Writer, f *identityFlags, now time.Time) error {
	if (f.anchorCert == "") != (f.anchorKey == "") {
		return fmt.Errorf("--anchor-cert and --anchor-key go together")
	}
	anchor, err := loadOrNewAnchor(f, now)
	if err != nil {
		return err
	}
	issuer, err := sds.NewIssuer(f.trustDomain, anchor, now, f.issuerValidity)
	if err != nil {
		return fmt.Errorf("generating the issuer: %w", err)
	}
	secret := sds.IssuerSecret(f.namespace, f.secret, issuer, anchor)
	bundle := sds.BundleConfigMap(f.namespace, f.bundle, f.bundleKey, anchor.Cert)
	for _, obj := range []any{secret, bundle} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encoding YAML: %w", err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
	}
	return nil
}

func loadOrNewAnchor(f *identityFlags, now time.Time) (*sds.CertKey, error) {
	if f.anchorCert != "" {
		pair, err := tls.LoadX509KeyPair(f.anchorCert, f.anchorKey)
		if err != nil {
			return nil, fmt.Errorf("reading the anchor: %w", err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("reading the anchor %s: %w", f.anchorCert, err)
		}
		certPEM, err := os.ReadFile(f.anchorCert)
		if err != nil {
			return nil, fmt.Errorf("reading the anchor: %w", err)
		}
		ck := &sds.CertKey{Cert: cert, CertPEM: certPEM}
		var ok bool
		if ck.Key, ok = asECDSA(pair.PrivateKey); !ok {
			return nil, fmt.Errorf("anchor key %s: want ECDSA P-256", f.anchorKey)
		}
		return ck, nil
	}
	anchor, err := sds.NewAnchor(f.trustDomain, now, f.anchorValidity)
	if err != nil {
		return nil, fmt.Errorf("generating the anchor: %w", err)
	}
	if f.anchorKeyOut != "" {
		if err := os.WriteFile(f.anchorKeyOut, anchor.KeyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("writing the anchor key: %w", err)
		}
	}
	return anchor, nil
}

func asECDSA(k any) (*ecdsa.PrivateKey, bool) {
	ek, ok := k.(*ecdsa.PrivateKey)
	return ek, ok && ek.Curve == elliptic.P256()
}

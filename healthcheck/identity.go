package healthcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/sds"
)

// IdentityPath is the control plane's admin endpoint serving its CA's
// sds.Status as JSON.
const IdentityPath = "/debug/identity"

func weftIdentity(withAdmin bool) category {
	checks := []check{
		{
			description: "issuer Secret and trust bundle are readable and well-formed",
			anchor:      "identity-material",
			run: func(ctx context.Context, r *run) error {
				_, err := r.trustMaterial(ctx)
				return err
			},
		},
		{
			description: fmt.Sprintf("trust anchors are valid for at least %d days", int(AnchorMinValidity.Hours()/24)),
			anchor:      "identity-anchors",
			run:         anchorsValidity,
		},
		{
			description: "issuer certificate is signed by a trust anchor",
			anchor:      "identity-issuer-signed",
			run: func(ctx context.Context, r *run) error {
				m, err := r.trustMaterial(ctx)
				if err != nil {
					return err
				}
				// The same validation the control plane applies before it
				// signs with an issuer.
				_, err = sds.NewMaterial(m.object, m.chain, m.key, m.anchors, r.cfg.Now())
				return err
			},
		},
		{
			description: fmt.Sprintf("issuer certificate is valid for at least %d days", int(IssuerMinValidity.Hours()/24)),
			anchor:      "identity-issuer-validity",
			run:         issuerValidity,
		},
	}
	if withAdmin {
		checks = append(checks, check{
			description: "control plane's CA is ready and uses the issuer in the Secret",
			anchor:      "identity-cp-ca",
			run:         controlPlaneCA,
		})
	}
	return category{name: "weft-identity", checks: checks}
}

// trustMaterial is the issuer Secret and the trust bundle, parsed as the
// control plane's sds.Watcher does: the bundle ConfigMap, or the Secret's
// ca.crt while there is none.
type trustMaterial struct {
	object  string
	chain   []*x509.Certificate
	key     *ecdsa.PrivateKey
	anchors []*x509.Certificate
}

func (r *run) trustMaterial(ctx context.Context) (trustMaterial, error) {
	return memo(r, "trust", func() (trustMaterial, error) {
		ns := r.cfg.Namespace
		m := trustMaterial{object: "Secret " + ns + "/" + IssuerSecretName}
		s, err := r.cfg.Kube.CoreV1().Secrets(ns).Get(ctx, IssuerSecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return m, fmt.Errorf("%s does not exist", m.object)
		}
		if err != nil {
			return m, fmt.Errorf("reading %s: %w", m.object, err)
		}
		chain, key, caCrt, err := sds.ParseIssuerSecret(s)
		if err != nil {
			return m, err
		}
		m.chain, m.key = chain, key
		cm, err := r.cfg.Kube.CoreV1().ConfigMaps(ns).Get(ctx, TrustBundleName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if len(caCrt) == 0 {
				return m, fmt.Errorf("ConfigMap %s/%s does not exist and %s has no ca.crt: there are no trust anchors", ns, TrustBundleName, m.object)
			}
			m.anchors = caCrt
		case err != nil:
			return m, fmt.Errorf("reading ConfigMap %s/%s: %w", ns, TrustBundleName, err)
		default:
			anchors, _, err := sds.ParseBundle(cm, sds.DefaultBundleKey, r.cfg.Now())
			if err != nil {
				return m, err
			}
			m.anchors = anchors
		}
		return m, nil
	})
}

func anchorsValidity(ctx context.Context, r *run) error {
	m, err := r.trustMaterial(ctx)
	if err != nil {
		return err
	}
	now := r.cfg.Now()
	var first *x509.Certificate
	for _, a := range m.anchors {
		if first == nil || a.NotAfter.Before(first.NotAfter) {
			first = a
		}
	}
	if first == nil || now.After(first.NotAfter) {
		return errors.New("no valid trust anchor")
	}
	if left := first.NotAfter.Sub(now); left < AnchorMinValidity {
		return warnf("trust anchor %q expires at %s, in %d days: rotate it with an overlap (docs/identity.md)",
			first.Subject, first.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))
	}
	return nil
}

func issuerValidity(ctx context.Context, r *run) error {
	m, err := r.trustMaterial(ctx)
	if err != nil {
		return err
	}
	issuer, now := m.chain[0], r.cfg.Now()
	switch left := issuer.NotAfter.Sub(now); {
	case now.Before(issuer.NotBefore):
		return fmt.Errorf("%s data[tls.crt]: issuer %q is not valid before %s", m.object, issuer.Subject, issuer.NotBefore.UTC().Format(time.RFC3339))
	case left <= 0:
		return fmt.Errorf("%s data[tls.crt]: issuer %q expired at %s", m.object, issuer.Subject, issuer.NotAfter.UTC().Format(time.RFC3339))
	case left < IssuerMinValidity:
		return warnf("%s data[tls.crt]: issuer %q expires at %s, in %s", m.object, issuer.Subject, issuer.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Minute))
	}
	return nil
}

// controlPlaneCA asks the control plane what its CA holds: it may have
// refused material that this check accepts (or keep signing with an older
// issuer after refusing a new one).
func controlPlaneCA(ctx context.Context, r *run) error {
	body, err := r.cfg.Admin.Get(ctx, IdentityPath)
	if err != nil {
		return fmt.Errorf("GET %s: %w", IdentityPath, err)
	}
	var st sds.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("reading the answer to GET %s: %w", IdentityPath, err)
	}
	if !st.Ready {
		return fmt.Errorf("the control plane cannot issue certificates: %s: %s", st.ProblemReason, st.Problem)
	}
	if st.Problem != "" {
		return fmt.Errorf("the control plane refused the newest trust material (%s since %s): %s; it still signs with issuer %q",
			st.ProblemReason, st.ProblemSince.UTC().Format(time.RFC3339), st.Problem, st.Issuer)
	}
	if m, err := r.trustMaterial(ctx); err == nil {
		if serial := m.chain[0].SerialNumber.Text(16); serial != st.IssuerSerial {
			return warnf("the control plane signs with issuer serial %s, %s holds serial %s (it rereads the Secret within a minute)",
				st.IssuerSerial, m.object, serial)
		}
	}
	return nil
}

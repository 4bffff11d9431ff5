package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
)

// webhook is one of the two webhook configurations Weft registers.
type webhook struct {
	kind, name, path, title string
}

var (
	injectorWebhook  = webhook{"MutatingWebhookConfiguration", InjectorWebhookName, InjectorWebhookPath, "proxy injector"}
	validatorWebhook = webhook{"ValidatingWebhookConfiguration", ValidatorWebhookName, ValidatorWebhookPath, "profile validator"}
)

func weftWebhooks() category {
	var checks []check
	for _, wh := range []webhook{injectorWebhook, validatorWebhook} {
		checks = append(checks,
			check{
				description: fmt.Sprintf("%s webhook is registered (%s %s)", wh.title, wh.kind, wh.name),
				anchor:      "webhook-registered",
				run: func(ctx context.Context, r *run) error {
					_, err := r.webhookClients(ctx, wh)
					return err
				},
			},
			check{
				description: wh.title + " webhook is reachable",
				anchor:      "webhook-reachable",
				run: func(ctx context.Context, r *run) error {
					return r.dialWebhook(ctx, wh).err
				},
			},
			check{
				description: wh.title + " webhook certificate is valid and matches the caBundle",
				anchor:      "webhook-certificate",
				run: func(ctx context.Context, r *run) error {
					return r.webhookCertificate(ctx, wh)
				},
			})
	}
	return category{name: "weft-webhooks", checks: checks}
}

// webhookClients reads a configuration and checks each webhook's
// clientConfig: a caBundle, and either the control plane's Service on the
// expected path or a URL.
func (r *run) webhookClients(ctx context.Context, wh webhook) ([]admissionregistrationv1.WebhookClientConfig, error) {
	return memo(r, "webhook/"+wh.name, func() ([]admissionregistrationv1.WebhookClientConfig, error) {
		var clients []admissionregistrationv1.WebhookClientConfig
		var err error
		adm := r.cfg.Kube.AdmissionregistrationV1()
		if wh.kind == injectorWebhook.kind {
			var c *admissionregistrationv1.MutatingWebhookConfiguration
			if c, err = adm.MutatingWebhookConfigurations().Get(ctx, wh.name, metav1.GetOptions{}); err == nil {
				for _, w := range c.Webhooks {
					clients = append(clients, w.ClientConfig)
				}
			}
		} else {
			var c *admissionregistrationv1.ValidatingWebhookConfiguration
			if c, err = adm.ValidatingWebhookConfigurations().Get(ctx, wh.name, metav1.GetOptions{}); err == nil {
				for _, w := range c.Webhooks {
					clients = append(clients, w.ClientConfig)
				}
			}
		}
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s %s does not exist", wh.kind, wh.name)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", wh.kind, wh.name, err)
		}
		if len(clients) == 0 {
			return nil, fmt.Errorf("%s %s webhooks: empty", wh.kind, wh.name)
		}
		var problems []error
		for i, c := range clients {
			at := fmt.Sprintf("%s %s webhooks[%d].clientConfig", wh.kind, wh.name, i)
			if len(c.CABundle) == 0 {
				problems = append(problems, fmt.Errorf("%s.caBundle: empty", at))
			}
			if s := c.Service; s != nil {
				if s.Namespace != r.cfg.Namespace || s.Name != ControlPlaneName {
					problems = append(problems, fmt.Errorf("%s.service: %s/%s, want %s/%s", at, s.Namespace, s.Name, r.cfg.Namespace, ControlPlaneName))
				}
				if s.Path == nil || *s.Path != wh.path {
					path := "<none>"
					if s.Path != nil {
						path = *s.Path
					}
					problems = append(problems, fmt.Errorf("%s.service.path: %s, want %s", at, path, wh.path))
				}
			} else if c.URL == nil {
				problems = append(problems, fmt.Errorf("%s: neither service nor url", at))
			}
		}
		return clients, errors.Join(problems...)
	})
}

// dialed is what a TLS handshake with a webhook's server showed.
type dialed struct {
	certs      []*x509.Certificate
	caBundle   []byte
	serverName string
	err        error
}

// dialWebhook does the TLS handshake the API server would: to the URL's
// host, or to the ready endpoints of the webhook's Service (from
// EndpointSlices, as the API server does with aggregator routing), with the
// server name <service>.<namespace>.svc. It dials from where weft runs, so
// from outside the cluster's network the endpoints may be out of reach even
// when the API server reaches them.
func (r *run) dialWebhook(ctx context.Context, wh webhook) dialed {
	d, _ := memo(r, "dial/"+wh.name, func() (dialed, error) {
		clients, err := r.webhookClients(ctx, wh)
		if len(clients) == 0 {
			return dialed{err: fmt.Errorf("nothing to dial: %w", err)}, nil
		}
		c := clients[0]
		d := dialed{caBundle: c.CABundle}
		var addrs []string
		if c.URL != nil {
			u, err := url.Parse(*c.URL)
			if err != nil {
				d.err = fmt.Errorf("%s %s webhooks[0].clientConfig.url: %w", wh.kind, wh.name, err)
				return d, nil
			}
			d.serverName = u.Hostname()
			port := u.Port()
			if port == "" {
				port = "443"
			}
			addrs = []string{net.JoinHostPort(u.Hostname(), port)}
		} else {
			d.serverName = c.Service.Name + "." + c.Service.Namespace + ".svc"
			addrs, err = r.serviceEndpoints(ctx, c.Service)
			if err != nil {
				d.err = err
				return d, nil
			}
		}
		var errs []error
		unreached := true
		for _, a := range addrs {
			certs, err := r.handshake(ctx, a, d.serverName)
			if err == nil {
				d.certs = certs
				return d, nil
			}
			errs = append(errs, err)
			var op *net.OpError
			unreached = unreached && errors.As(err, &op) && op.Op == "dial"
		}
		d.err = errors.Join(errs...)
		if unreached && c.Service != nil {
			// Ready endpoints that do not answer here are most often
			// out of this machine's reach, not down: a warning.
			d.err = warnf("the Service's ready endpoints do not answer from here (run weft check inside the cluster network to tell): %w", d.err)
		}
		return d, nil
	})
	return d
}

func (r *run) handshake(ctx context.Context, addr, serverName string) ([]*x509.Certificate, error) {
	raw, err := r.cfg.DialWebhook(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	// Verification is done apart (webhookCertificate) so that a server
	// that answers with the wrong certificate still counts as reachable.
	conn := tls.Client(raw, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // verified by webhookCertificate
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return conn.ConnectionState().PeerCertificates, nil
}

// serviceEndpoints are the ready addresses behind a webhook's Service port.
func (r *run) serviceEndpoints(ctx context.Context, ref *admissionregistrationv1.ServiceReference) ([]string, error) {
	svc, err := r.cfg.Kube.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading Service %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	want := int32(443)
	if ref.Port != nil {
		want = *ref.Port
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == want {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil, fmt.Errorf("Service %s/%s has no port %d", ref.Namespace, ref.Name, want)
	}
	slices, err := r.cfg.Kube.DiscoveryV1().EndpointSlices(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + ref.Name})
	if err != nil {
		return nil, fmt.Errorf("listing EndpointSlices of Service %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	var addrs []string
	for _, s := range slices.Items {
		for _, p := range s.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != sp.Name) {
				continue
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					addrs = append(addrs, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("Service %s/%s port %d has no ready endpoints", ref.Namespace, ref.Name, want)
	}
	return addrs, nil
}

// webhookCertificate checks the certificate the server presented, or when
// it could not be reached the one in the serving Secret: valid now, for
// WebhookCertMinValidity more, for the name the API server dials, and
// signed by the caBundle the API server trusts.
func (r *run) webhookCertificate(ctx context.Context, wh webhook) error {
	d := r.dialWebhook(ctx, wh)
	if len(d.caBundle) == 0 {
		return fmt.Errorf("no caBundle to check against: %w", d.err)
	}
	certs, source := d.certs, "the certificate served"
	if len(certs) == 0 {
		source = fmt.Sprintf("Secret %s/%s data[%s] (the server was not reached)", r.cfg.Namespace, WebhookServingSecret, corev1.TLSCertKey)
		s, err := r.cfg.Kube.CoreV1().Secrets(r.cfg.Namespace).Get(ctx, WebhookServingSecret, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("the server was not reached and its Secret cannot be read: %w", err)
		}
		if certs, err = certutil.ParseCertsPEM(s.Data[corev1.TLSCertKey]); err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(d.caBundle) {
		return fmt.Errorf("%s %s webhooks[0].clientConfig.caBundle: no PEM certificate", wh.kind, wh.name)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf, now := certs[0], r.cfg.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%s (%q) expired at %s", source, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: d.serverName, CurrentTime: now}); err != nil {
		return fmt.Errorf("%s does not match %s %s's caBundle for %s: %w", source, wh.kind, wh.name, d.serverName, err)
	}
	if left := leaf.NotAfter.Sub(now); left < WebhookCertMinValidity {
		return warnf("%s expires at %s, in %s", source, leaf.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Hour))
	}
	return nil
}

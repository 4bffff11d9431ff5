package healthcheck

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds"
)

// versionedTypes are the per-proxy resource sets whose version says
// whether a proxy has the current config (EDS is shared and versioned per
// resource, so it is left out).
var versionedTypes = []string{"lds", "rds", "cds", "sds"}

// CertificateMaxAge is how much of its lifetime a proxy's certificate may
// have used: the control plane renews at about 70%, so past this the
// renewal did not reach the proxy.
const CertificateMaxAge = 0.8

func weftDataPlane() category {
	return category{name: "weft-data-plane", checks: []check{
		{
			description: "data plane proxies are connected to the control plane",
			anchor:      "dp-connected",
			run: func(ctx context.Context, r *run) error {
				_, err := r.meshedProxies(ctx)
				return err
			},
		},
		{
			description: "data plane proxies are on the current configuration",
			anchor:      "dp-current",
			run:         proxiesCurrent,
		},
		{
			description: "data plane proxies have not rejected their configuration (no NACKs)",
			anchor:      "dp-nacks",
			run:         proxiesNoNacks,
		},
		{
			description: "data plane proxies have fresh certificates",
			anchor:      "dp-certificates",
			run:         proxiesFreshCertificates,
		},
	}}
}

// meshedProxies are the control plane's records of the proxies of every
// Running meshed pod (as the control plane decides it: mesh.PodMeshed), and
// an error naming the pods whose proxy is not connected.
func (r *run) meshedProxies(ctx context.Context) ([]xds.ProxyStatus, error) {
	return memo(r, "proxies", func() ([]xds.ProxyStatus, error) {
		body, err := r.cfg.Admin.Get(ctx, "/debug/proxies")
		if err != nil {
			return nil, fmt.Errorf("GET /debug/proxies: %w", err)
		}
		var list []xds.ProxyStatus
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("reading the answer to GET /debug/proxies: %w", err)
		}
		connected := make(map[string]xds.ProxyStatus, len(list))
		for _, p := range list {
			connected[p.Node] = p
		}
		nss, err := r.cfg.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		byName := make(map[string]*corev1.Namespace, len(nss.Items))
		for i := range nss.Items {
			byName[nss.Items[i].Name] = &nss.Items[i]
		}
		pods, err := r.cfg.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
		if err != nil {
			return nil, fmt.Errorf("listing Running pods: %w", err)
		}
		var out []xds.ProxyStatus
		var missing []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil || !mesh.PodMeshed(p, byName[p.Namespace]) {
				continue
			}
			id := proxy.NodeID(p.Name, p.Namespace)
			if st, ok := connected[id]; ok {
				out = append(out, st)
			} else {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return out, notConnected{fmt.Errorf("%d meshed pods have no proxy connected to this control plane replica: %s", len(missing), listSome(missing))}
		}
		return out, nil
	})
}

// notConnected is meshedProxies' error when it read everything and some
// proxies are missing: the other data plane lines still judge the rest.
type notConnected struct{ error }

// connectedProxies is meshedProxies for the lines that judge the proxies
// that are connected.
func (r *run) connectedProxies(ctx context.Context) ([]xds.ProxyStatus, error) {
	proxies, err := r.meshedProxies(ctx)
	if err != nil && !errors.As(err, &notConnected{}) {
		return nil, err
	}
	return proxies, nil
}

func listSome(items []string) string {
	const most = 10
	if len(items) <= most {
		return fmt.Sprint(items)
	}
	return fmt.Sprintf("%v and %d more", items[:most], len(items)-most)
}

func proxiesCurrent(ctx context.Context, r *run) error {
	proxies, err := r.connectedProxies(ctx)
	if err != nil {
		return err
	}
	var stale []string
	for _, p := range proxies {
		for _, t := range versionedTypes {
			ts, ok := p.Types[t]
			if !ok || ts.VersionSet == "" || ts.VersionAcked == ts.VersionSet {
				continue
			}
			stale = append(stale, fmt.Sprintf("%s %s (ACKed %q, current %q)", p.Node, t, ts.VersionAcked, ts.VersionSet))
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("%d proxy resource sets are behind: %s", len(stale), listSome(stale))
	}
	return nil
}

// proxiesNoNacks fails for a NACK newer than the type's last ACK: a proxy
// that rejected a version and has accepted none since.
func proxiesNoNacks(ctx context.Context, r *run) error {
	proxies, err := r.connectedProxies(ctx)
	if err != nil {
		return err
	}
	var nacked []error
	for _, p := range proxies {
		for _, t := range proxyTypes {
			ts := p.Types[t]
			n := ts.LastNack
			if n == nil || (ts.AckedAt != nil && ts.AckedAt.After(n.At)) {
				continue
			}
			nacked = append(nacked, fmt.Errorf("%s rejected %s version %q at %s: %s: %s", p.Node, t, n.Version, n.At.UTC().Format(time.RFC3339), n.Code, n.Message))
		}
	}
	return errors.Join(nacked...)
}

// proxyTypes are every type a proxy can NACK.
var proxyTypes = []string{"lds", "rds", "cds", "eds", "sds"}

// proxiesFreshCertificates reads each proxy's SDS secrets from
// /debug/config/<node> (private keys are redacted there, certificates are
// not) and checks the workload certificate's lifetime.
func proxiesFreshCertificates(ctx context.Context, r *run) error {
	proxies, err := r.connectedProxies(ctx)
	if err != nil {
		return err
	}
	var problems []error
	for _, p := range proxies {
		if _, ok := p.Types["sds"]; !ok {
			continue // identity off, or a proxy that asks for no secrets
		}
		leaves, err := r.proxyLeaves(ctx, p.Node)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		now := r.cfg.Now()
		for name, leaf := range leaves {
			life, used := leaf.NotAfter.Sub(leaf.NotBefore), now.Sub(leaf.NotBefore)
			switch {
			case now.After(leaf.NotAfter):
				problems = append(problems, fmt.Errorf("%s secret %q: certificate expired at %s", p.Node, name, leaf.NotAfter.UTC().Format(time.RFC3339)))
			case life > 0 && float64(used) > CertificateMaxAge*float64(life):
				problems = append(problems, fmt.Errorf("%s secret %q: certificate has used %.0f%% of its lifetime (expires %s) and was not renewed",
					p.Node, name, 100*float64(used)/float64(life), leaf.NotAfter.UTC().Format(time.RFC3339)))
			}
		}
	}
	return errors.Join(problems...)
}

func (r *run) proxyLeaves(ctx context.Context, node string) (map[string]*x509.Certificate, error) {
	body, err := r.cfg.Admin.Get(ctx, "/debug/config/"+url.PathEscape(node))
	if err != nil {
		return nil, fmt.Errorf("GET /debug/config/%s: %w", node, err)
	}
	var doc xds.NodeConfigDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("reading the configuration of %s: %w", node, err)
	}
	res, err := doc.DecodeResources()
	if err != nil {
		return nil, fmt.Errorf("reading the configuration of %s: %w", node, err)
	}
	leaves := map[string]*x509.Certificate{}
	for i, m := range res[resourcev3.SecretType] {
		s, _ := m.(*tlsv3.Secret)
		chain := s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		if len(chain) == 0 {
			continue // a validation context (the trust bundle)
		}
		certs, err := certutil.ParseCertsPEM(chain)
		if err != nil {
			return nil, fmt.Errorf("%s secrets[%d] (%q) tls_certificate.certificate_chain: %w", node, i, s.GetName(), err)
		}
		leaves[s.GetName()] = certs[0]
	}
	return leaves, nil
}

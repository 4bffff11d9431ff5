package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/translate"
)

// Golden is the embedded metrics source: the proxies' streamed stats
// grouped by the mesh model.
func (c *Controller) Golden() telemetry.Source {
	return &telemetry.Embedded{Store: c.golden, Dir: storeDirectory{c.store, c.cfg.TrustDomain}, ClusterDomain: c.cfg.ClusterDomain}
}

// GoldenStore is the embedded path's store (benchmarks and tests).
func (c *Controller) GoldenStore() *telemetry.Store { return c.golden }

// statHandler serves GET /api/stat?resource=deployment&namespace=shop&all=true
// &name=web&from=deploy/web&to=svc/api&window=1m as a telemetry.Table.
func (c *Controller) statHandler() http.Handler {
	src := c.Golden()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		q := telemetry.Query{
			Namespace: v.Get("namespace"), Name: v.Get("name"), From: v.Get("from"), To: v.Get("to"),
		}
		var err error
		if q.Resource, err = telemetry.ParseResource(v.Get("resource")); err != nil {
			http.Error(w, "resource: "+err.Error(), http.StatusBadRequest)
			return
		}
		if a := v.Get("all"); a != "" {
			if q.AllNamespaces, err = strconv.ParseBool(a); err != nil {
				http.Error(w, fmt.Sprintf("all %q: not a boolean", a), http.StatusBadRequest)
				return
			}
		}
		if win := v.Get("window"); win != "" {
			if q.Window, err = time.ParseDuration(win); err != nil {
				http.Error(w, fmt.Sprintf("window %q: %v", win, err), http.StatusBadRequest)
				return
			}
		}
		t, err := src.Query(r.Context(), q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t)
	})
}

// storeDirectory is the model store as telemetry.Directory.
type storeDirectory struct {
	s           *Store
	trustDomain string
}

func (d storeDirectory) Workloads() []telemetry.Workload {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]telemetry.Workload, 0, len(s.pods))
	for name, pod := range s.pods {
		if !podMayRun(pod) {
			continue
		}
		w := telemetry.Workload{Namespace: name.Namespace, Pod: name.Name, Deployment: deploymentOf(pod)}
		for svc := range s.podServices[name] {
			w.Services = append(w.Services, svc.Name)
		}
		if p := s.proxies[proxy.NodeID(name.Name, name.Namespace)]; p != nil {
			w.Meshed = true
			if !p.Identity.IsZero() {
				w.Identity = p.Identity.SPIFFE(d.trustDomain)
			}
		}
		out = append(out, w)
	}
	return out
}

// deploymentOf follows the pod's ReplicaSet owner to its Deployment by the
// name the Deployment controller gives a ReplicaSet: <deployment>-<pod-template-hash>.
func deploymentOf(pod *corev1.Pod) string {
	hash := pod.Labels["pod-template-hash"]
	for _, o := range pod.OwnerReferences {
		if o.Kind == "ReplicaSet" && hash != "" {
			if d, ok := strings.CutSuffix(o.Name, "-"+hash); ok {
				return d
			}
		}
	}
	return ""
}

func (d storeDirectory) ResponseClasses(namespace, service, route string) []telemetry.StatusRange {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	// The server's own profile: the one in the service's namespace.
	prof := s.profVals[mesh.ProfileKey{Namespace: namespace, Service: mesh.ServiceKey{Namespace: namespace, Name: service}}]
	if prof == nil {
		return nil
	}
	for _, r := range prof.Routes {
		if r.Name != route {
			continue
		}
		var out []telemetry.StatusRange
		for _, sr := range translate.ResponseClassRanges(r.ResponseClasses) {
			out = append(out, telemetry.StatusRange{Min: int(sr.Min), Max: int(sr.Max), IsFailure: sr.IsFailure})
		}
		return out
	}
	return nil
}

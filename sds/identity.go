package sds

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Workload is who a leaf is for: a ServiceAccount in a namespace, as proven
// by the caller's authenticated stream (never as claimed by a CSR).
type Workload struct {
	Namespace      string
	ServiceAccount string
}

func (w Workload) String() string { return w.Namespace + "/" + w.ServiceAccount }

// ID is the workload's SPIFFE ID in trust domain td:
// spiffe://<td>/ns/<namespace>/sa/<serviceaccount>, the form Istio and
// Linkerd's SPIFFE mode use, so policies written for them read the same.
func (w Workload) ID(td spiffeid.TrustDomain) (spiffeid.ID, error) {
	if w.Namespace == "" || w.ServiceAccount == "" {
		return spiffeid.ID{}, fmt.Errorf("workload %q: namespace and service account are both required", w.String())
	}
	id, err := spiffeid.FromSegments(td, "ns", w.Namespace, "sa", w.ServiceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("workload %s: building SPIFFE ID: %w", w, err)
	}
	return id, nil
}

// ParseWorkloadID reads a workload SPIFFE ID back, refusing any other shape:
// a peer presenting spiffe://td/anything-else is not a mesh workload.
func ParseWorkloadID(s string) (spiffeid.TrustDomain, Workload, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, Workload{}, fmt.Errorf("parsing SPIFFE ID %q: %w", s, err)
	}
	var w Workload
	// Every segment is checked so "/ns/a/sa/b/extra" is refused rather than
	// read as a/b.
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(segs) != 4 || segs[0] != "ns" || segs[2] != "sa" || segs[1] == "" || segs[3] == "" {
		return spiffeid.TrustDomain{}, Workload{}, fmt.Errorf("SPIFFE ID %q: path %q is not /ns/<namespace>/sa/<serviceaccount>", s, id.Path())
	}
	w.Namespace, w.ServiceAccount = segs[1], segs[3]
	return id.TrustDomain(), w, nil
}

// Matcher accepts exactly the workloads given (any of them), in trust domain
// td: what an outbound TLS context checks on the destination's certificate.
func Matcher(td spiffeid.TrustDomain, workloads ...Workload) (spiffeid.Matcher, error) {
	ids := make([]spiffeid.ID, 0, len(workloads))
	for _, w := range workloads {
		id, err := w.ID(td)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return spiffeid.MatchOneOf(ids...), nil
}

package healthcheck

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

// IdentityLeaseName is the Lease cp's replicas elect the identity leader
// with (cmd/cp).
const IdentityLeaseName = "weft-cp-identity"

// Permission is one kind of request the control plane makes of the API
// server. ControlPlanePermissions is the one list of them: weft check asks
// whether the control plane's ServiceAccount holds each, and the chart's
// tests hold its RBAC to exactly that list.
type Permission struct {
	Verb, Group, Resource string
	// Name is the one object the request is about (RBAC resourceNames); ""
	// is any.
	Name string
	// Namespaced holds in the control plane's namespace only; the others
	// are cluster-wide.
	Namespaced bool
}

func (p Permission) String() string {
	s := p.Verb + " " + p.Resource
	if p.Group != "" {
		s += "." + p.Group
	}
	if p.Name != "" {
		s += " " + p.Name
	}
	return s
}

// ControlPlaneFeatures are the cp flags that change what it asks of the API
// server.
type ControlPlaneFeatures struct {
	Identity       bool // --identity
	ExternalIssuer bool // --external-issuer set
}

// FeaturesFromArgs reads ControlPlaneFeatures from cp's arguments, as the
// chart's Deployment passes them (--flag or --flag=value).
func FeaturesFromArgs(args []string) ControlPlaneFeatures {
	var f ControlPlaneFeatures
	for _, a := range args {
		flag, value, hasValue := strings.Cut(a, "=")
		switch flag {
		case "--identity":
			f.Identity = !hasValue || value == "true"
		case "--external-issuer":
			f.ExternalIssuer = value != ""
		}
	}
	return f
}

// ControlPlanePermissions is every permission cp uses with those features
// (and its injection webhook, which the chart always runs).
func ControlPlanePermissions(f ControlPlaneFeatures) []Permission {
	var ps []Permission
	add := func(group, resource, name string, namespaced bool, verbs ...string) {
		for _, v := range verbs {
			ps = append(ps, Permission{Verb: v, Group: group, Resource: resource, Name: name, Namespaced: namespaced})
		}
	}
	// controller's informers; the webhook reads a pod's namespace.
	add("", "namespaces", "", false, "get", "list", "watch")
	add("", "services", "", false, "list", "watch")
	add("", "pods", "", false, "list", "watch")
	add("discovery.k8s.io", "endpointslices", "", false, "list", "watch")
	add("linkerd.io", "serviceprofiles", "", false, "list", "watch")
	add("split.smi-spec.io", "trafficsplits", "", false, "list", "watch")
	// Events on the objects they are about, in any namespace.
	add("", "events", "", false, "create", "patch")
	if !f.Identity {
		return ps
	}
	add("authentication.k8s.io", "tokenreviews", "", false, "create")
	// The trust material, watched by name (a metadata.name field selector).
	add("", "secrets", IssuerSecretName, true, "list", "watch")
	add("", "configmaps", TrustBundleName, true, "list", "watch")
	// The leader creates the bundle from the issuer's ca.crt when missing.
	add("", "configmaps", "", true, "create")
	add("coordination.k8s.io", "leases", "", true, "create")
	add("coordination.k8s.io", "leases", IdentityLeaseName, true, "get", "update")
	if f.ExternalIssuer {
		add("cert-manager.io", "certificaterequests", "", true, "create", "list", "watch", "delete")
	}
	return ps
}

// controlPlaneRBAC asks the API server, by SubjectAccessReview, whether the
// ServiceAccount of the control plane's Deployment may do everything the
// control plane does with the flags it runs with, and names every
// permission it lacks.
func controlPlaneRBAC(ctx context.Context, r *run) error {
	ns := r.cfg.Namespace
	dep, err := r.cfg.Kube.AppsV1().Deployments(ns).Get(ctx, ControlPlaneName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("Deployment %s/%s does not exist", ns, ControlPlaneName)
	}
	if err != nil {
		return fmt.Errorf("reading Deployment %s/%s: %w", ns, ControlPlaneName, err)
	}
	pod := dep.Spec.Template.Spec
	sa := pod.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	// The chart names cp's container "cp"; a Deployment made otherwise has
	// it first.
	var args []string
	if i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == "cp" }); i >= 0 {
		args = pod.Containers[i].Args
	} else if len(pod.Containers) > 0 {
		args = pod.Containers[0].Args
	}
	var missing []string
	for _, p := range ControlPlanePermissions(FeaturesFromArgs(args)) {
		attr := &authorizationv1.ResourceAttributes{Verb: p.Verb, Group: p.Group, Resource: p.Resource, Name: p.Name}
		what := p.String()
		if p.Namespaced {
			attr.Namespace = ns
			what += " in namespace " + ns
		}
		rev, err := r.cfg.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               serviceaccount.MakeUsername(ns, sa),
				Groups:             append(serviceaccount.MakeGroupNames(ns), user.AllAuthenticated),
				ResourceAttributes: attr,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("asking whether ServiceAccount %s/%s may %s: %w", ns, sa, what, err)
		}
		if !rev.Status.Allowed {
			missing = append(missing, what)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("ServiceAccount %s/%s (of Deployment %s) lacks: %s", ns, sa, ControlPlaneName, strings.Join(missing, "; "))
	}
	return nil
}

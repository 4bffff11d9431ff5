package charts

import (
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/healthcheck"
)

// TestRBACIsWhatTheControlPlaneUses: least privilege. For each shape of the
// chart, its Roles and ClusterRoles, bound to the control plane's
// ServiceAccount and nothing else, grant exactly
// healthcheck.ControlPlanePermissions for the flags its Deployment passes:
// nothing missing (cp would be refused; TestControlPlaneRunsOnChartRBAC runs
// it) and nothing beyond.
func TestRBACIsWhatTheControlPlaneUses(t *testing.T) {
	cases := []struct {
		name string
		vals map[string]any
		want healthcheck.ControlPlaneFeatures
	}{
		{name: "default", want: healthcheck.ControlPlaneFeatures{Identity: true}},
		{name: "ha", vals: haValues(t), want: healthcheck.ControlPlaneFeatures{Identity: true}},
		{name: "without identity", vals: map[string]any{"identity": map[string]any{"enabled": false}}},
		{
			name: "external issuer",
			vals: map[string]any{
				"certManager": map[string]any{"enabled": true},
				"identity":    map[string]any{"source": "certManager", "externalIssuer": "ClusterIssuer/weft-ca"},
			},
			want: healthcheck.ControlPlaneFeatures{Identity: true, ExternalIssuer: true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.vals)
			var dep appsv1.Deployment
			find(t, objs, "Deployment", healthcheck.ControlPlaneName, &dep)
			if sa := dep.Spec.Template.Spec.ServiceAccountName; sa != "weft-cp" {
				t.Errorf("Deployment spec.template.spec.serviceAccountName %q, want weft-cp", sa)
			}
			features := healthcheck.FeaturesFromArgs(dep.Spec.Template.Spec.Containers[0].Args)
			if features != tc.want {
				t.Errorf("the Deployment's args run cp with %+v, want %+v", features, tc.want)
			}
			want := map[healthcheck.Permission]bool{}
			for _, p := range healthcheck.ControlPlanePermissions(features) {
				want[p] = true
			}
			got := granted(t, objs)
			for p := range got {
				if !want[p] {
					t.Errorf("the chart grants %s (namespaced %v), which the control plane does not use", p, p.Namespaced)
				}
			}
			for p := range want {
				if !got[p] {
					t.Errorf("the chart does not grant %s (namespaced %v), which the control plane uses", p, p.Namespaced)
				}
			}
		})
	}
}

// granted expands the render's RBAC into permissions: a ClusterRole's rules
// cluster-wide, a Role's in the release namespace, each only if bound to the
// control plane's ServiceAccount by a binding of the same scope. A wildcard,
// a binding to anyone else or an unbound role fails the test.
func granted(t *testing.T, objs []*unstructured.Unstructured) map[healthcheck.Permission]bool {
	t.Helper()
	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "weft-cp", Namespace: Namespace}
	bound := map[string]bool{}
	for _, o := range objs {
		var b struct {
			RoleRef  rbacv1.RoleRef   `json:"roleRef"`
			Subjects []rbacv1.Subject `json:"subjects"`
		}
		switch o.GetKind() {
		case "ClusterRoleBinding", "RoleBinding":
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
		default:
			continue
		}
		if !slices.Equal(b.Subjects, []rbacv1.Subject{sa}) {
			t.Errorf("%s %s subjects %+v, want only %+v", o.GetKind(), o.GetName(), b.Subjects, sa)
		}
		if o.GetKind() == "RoleBinding" && b.RoleRef.Kind != "Role" {
			t.Errorf("RoleBinding %s binds %s %s: a Role, in the namespace, is what it should bind", o.GetName(), b.RoleRef.Kind, b.RoleRef.Name)
		}
		bound[b.RoleRef.Kind+"/"+b.RoleRef.Name] = true
	}
	out := map[healthcheck.Permission]bool{}
	for _, o := range objs {
		kind := o.GetKind()
		if kind != "ClusterRole" && kind != "Role" {
			continue
		}
		if !bound[kind+"/"+o.GetName()] {
			t.Errorf("%s %s is bound to nothing", kind, o.GetName())
		}
		if kind == "Role" && o.GetNamespace() != Namespace {
			t.Errorf("Role %s in namespace %q, want %s", o.GetName(), o.GetNamespace(), Namespace)
		}
		var role struct {
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
			t.Fatalf("%s %s: %v", kind, o.GetName(), err)
		}
		for i, r := range role.Rules {
			at := fmt.Sprintf("%s %s rules[%d]", kind, o.GetName(), i)
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s.nonResourceURLs: %v; the control plane uses none", at, r.NonResourceURLs)
			}
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						for _, n := range names {
							if g == "*" || res == "*" || v == "*" {
								t.Errorf("%s: wildcard in %q %q %q", at, g, res, v)
							}
							out[healthcheck.Permission{Verb: v, Group: g, Resource: res, Name: n, Namespaced: kind == "Role"}] = true
						}
					}
				}
			}
		}
	}
	return out
}

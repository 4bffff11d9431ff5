package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
)

// The Kubernetes versions Weft supports: the oldest is a policy (Weft is
// not tested there, and nothing older is meant to work), the newest is
// the one its tests run against (testenv's apiserver). Newer minors are a
// warning, not a failure.
var (
	MinKubernetesVersion    = version.MustParseGeneric("1.30.0")
	NewestKubernetesVersion = version.MustParseGeneric("1.36.0")
)

func kubernetesAPI() category {
	return category{name: "kubernetes-api", checks: []check{{
		description: "can query the Kubernetes API",
		anchor:      "k8s-api",
		fatal:       true,
		run: func(ctx context.Context, r *run) error {
			_, err := serverVersion(ctx, r)
			return err
		},
	}}}
}

func serverVersion(ctx context.Context, r *run) (*version.Version, error) {
	return memo(r, "version", func() (*version.Version, error) {
		info, err := r.cfg.Kube.Discovery().ServerVersion()
		if err != nil {
			return nil, fmt.Errorf("asking the API server its version: %w", err)
		}
		v, err := version.ParseGeneric(info.GitVersion)
		if err != nil {
			return nil, fmt.Errorf("the API server's version %q: %w", info.GitVersion, err)
		}
		return v, nil
	})
}

func kubernetesVersion() category {
	return category{name: "kubernetes-version", checks: []check{{
		description: fmt.Sprintf("is running a supported Kubernetes version (v%d.%d to v%d.%d)",
			MinKubernetesVersion.Major(), MinKubernetesVersion.Minor(), NewestKubernetesVersion.Major(), NewestKubernetesVersion.Minor()),
		anchor: "k8s-version",
		run: func(ctx context.Context, r *run) error {
			v, err := serverVersion(ctx, r)
			if err != nil {
				return err
			}
			if v.LessThan(MinKubernetesVersion) {
				return fmt.Errorf("Kubernetes is v%s; Weft needs at least v%s", v, MinKubernetesVersion)
			}
			newest := NewestKubernetesVersion
			if v.Major() > newest.Major() || (v.Major() == newest.Major() && v.Minor() > newest.Minor()) {
				return warnf("Kubernetes is v%s, newer than v%d.%d, the newest Weft is tested with", v, newest.Major(), newest.Minor())
			}
			return nil
		},
	}}}
}

// chartObject is a kind of object the chart creates: who runs `weft
// install` or `helm install` must be allowed to create it.
type chartObject struct {
	group, resource string
	namespaced      bool
}

var chartObjects = []chartObject{
	{"", "namespaces", false},
	{"apiextensions.k8s.io", "customresourcedefinitions", false},
	{"rbac.authorization.k8s.io", "clusterroles", false},
	{"rbac.authorization.k8s.io", "clusterrolebindings", false},
	{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", false},
	{"admissionregistration.k8s.io", "validatingwebhookconfigurations", false},
	{"apps", "deployments", true},
	{"", "services", true},
	{"", "serviceaccounts", true},
	{"", "secrets", true},
	{"", "configmaps", true},
	{"rbac.authorization.k8s.io", "roles", true},
	{"rbac.authorization.k8s.io", "rolebindings", true},
	{"policy", "poddisruptionbudgets", true},
}

func preKubernetesSetup() category {
	return category{name: "pre-kubernetes-setup", checks: []check{
		{
			description: "can create the cluster-wide objects Weft installs",
			anchor:      "pre-k8s-cluster-wide",
			run: func(ctx context.Context, r *run) error {
				return r.canCreate(ctx, false)
			},
		},
		{
			description: "can create the objects Weft installs in its namespace",
			anchor:      "pre-k8s-namespaced",
			run: func(ctx context.Context, r *run) error {
				return r.canCreate(ctx, true)
			},
		},
		{
			description: "no Weft control plane is installed already",
			anchor:      "pre-k8s-conflicts",
			run:         noConflicts,
		},
		{
			description: "control plane namespace does not already exist",
			anchor:      "pre-k8s-namespace",
			run: func(ctx context.Context, r *run) error {
				_, err := r.cfg.Kube.CoreV1().Namespaces().Get(ctx, r.cfg.Namespace, metav1.GetOptions{})
				switch {
				case apierrors.IsNotFound(err):
					return nil
				case err != nil:
					return fmt.Errorf("reading namespace %s: %w", r.cfg.Namespace, err)
				}
				return warnf("namespace %s exists; install into it only if it was made for Weft (helm install without --create-namespace)", r.cfg.Namespace)
			},
		},
	}}
}

// canCreate asks the API server, by SelfSubjectAccessReview, whether the
// user may create each kind the chart creates, and names every one it may
// not.
func (r *run) canCreate(ctx context.Context, namespaced bool) error {
	var missing []string
	for _, o := range chartObjects {
		if o.namespaced != namespaced {
			continue
		}
		attr := &authorizationv1.ResourceAttributes{Verb: "create", Group: o.group, Resource: o.resource}
		what := o.resource
		if o.group != "" {
			what += "." + o.group
		}
		if namespaced {
			attr.Namespace = r.cfg.Namespace
		}
		rev, err := r.cfg.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: attr}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("asking whether you may create %s: %w", what, err)
		}
		if !rev.Status.Allowed {
			if namespaced {
				what += " in namespace " + r.cfg.Namespace
			}
			missing = append(missing, "create "+what)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing permissions: %s", strings.Join(missing, "; "))
	}
	return nil
}

// noConflicts finds what an earlier Weft install left: its Deployment and
// webhook configurations. The ServiceProfile and TrafficSplit CRDs are no
// conflict: Weft runs beside a Linkerd that installed them.
func noConflicts(ctx context.Context, r *run) error {
	var found []string
	_, err := r.cfg.Kube.AppsV1().Deployments(r.cfg.Namespace).Get(ctx, ControlPlaneName, metav1.GetOptions{})
	if err == nil {
		found = append(found, "Deployment "+r.cfg.Namespace+"/"+ControlPlaneName)
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Deployment %s/%s: %w", r.cfg.Namespace, ControlPlaneName, err)
	}
	_, err = r.cfg.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, InjectorWebhookName, metav1.GetOptions{})
	if err == nil {
		found = append(found, "MutatingWebhookConfiguration "+InjectorWebhookName)
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", InjectorWebhookName, err)
	}
	_, err = r.cfg.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, ValidatorWebhookName, metav1.GetOptions{})
	if err == nil {
		found = append(found, "ValidatingWebhookConfiguration "+ValidatorWebhookName)
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", ValidatorWebhookName, err)
	}
	if len(found) > 0 {
		return fmt.Errorf("already installed: %s (weft uninstall removes them)", strings.Join(found, ", "))
	}
	return nil
}

func weftCRDs() category {
	crd := func(name, ver string) check {
		return check{
			description: fmt.Sprintf("CRD %s is installed with %s served", name, ver),
			anchor:      "crds",
			run: func(ctx context.Context, r *run) error {
				return r.crdServed(ctx, name, ver)
			},
		}
	}
	return category{name: "weft-crds", checks: []check{
		crd(ServiceProfileCRD, ServiceProfileVersion),
		crd(TrafficSplitCRD, TrafficSplitVersion),
	}}
}

func (r *run) crdServed(ctx context.Context, name, ver string) error {
	crd, err := r.cfg.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("CustomResourceDefinition %s is not installed (weft install --crds installs it)", name)
	}
	if err != nil {
		return fmt.Errorf("reading CustomResourceDefinition %s: %w", name, err)
	}
	established := slices.ContainsFunc(crd.Status.Conditions, func(c apiextensionsv1.CustomResourceDefinitionCondition) bool {
		return c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
	})
	if !established {
		return fmt.Errorf("CustomResourceDefinition %s is not Established yet", name)
	}
	var served []string
	for i, v := range crd.Spec.Versions {
		if v.Name == ver {
			if !v.Served {
				return fmt.Errorf("CustomResourceDefinition %s spec.versions[%d] (%s) is not served", name, i, ver)
			}
			return nil
		}
		if v.Served {
			served = append(served, v.Name)
		}
	}
	return fmt.Errorf("CustomResourceDefinition %s has no version %s (it serves %s)", name, ver, strings.Join(served, ", "))
}

func weftExistence(withAdmin bool) category {
	checks := []check{
		{
			description: "control plane namespace exists",
			anchor:      "cp-namespace",
			fatal:       true,
			run: func(ctx context.Context, r *run) error {
				_, err := r.cfg.Kube.CoreV1().Namespaces().Get(ctx, r.cfg.Namespace, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("namespace %s does not exist (is Weft installed? --namespace names another)", r.cfg.Namespace)
				}
				if err != nil {
					return fmt.Errorf("reading namespace %s: %w", r.cfg.Namespace, err)
				}
				return nil
			},
		},
		{
			description: "control plane pods are ready",
			anchor:      "cp-pods-ready",
			run:         controlPlanePodsReady,
		},
		{
			description: "control plane ServiceAccount has the permissions the control plane uses",
			anchor:      "cp-rbac",
			run:         controlPlaneRBAC,
		},
	}
	if withAdmin {
		checks = append(checks, check{
			description: "control plane admin endpoint says it is ready",
			anchor:      "cp-admin",
			run: func(ctx context.Context, r *run) error {
				if _, err := r.cfg.Admin.Get(ctx, "/readyz"); err != nil {
					return fmt.Errorf("GET /readyz: %w", err)
				}
				return nil
			},
		})
	}
	return category{name: "weft-existence", checks: checks}
}

func controlPlanePodsReady(ctx context.Context, r *run) error {
	pods, err := r.cfg.Kube.CoreV1().Pods(r.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ControlPlaneSelector})
	if err != nil {
		return fmt.Errorf("listing control plane pods (%s) in %s: %w", ControlPlaneSelector, r.cfg.Namespace, err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("no pods labelled %s in namespace %s", ControlPlaneSelector, r.cfg.Namespace)
	}
	var problems []error
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if !podReady(&p) {
			problems = append(problems, fmt.Errorf("pod %s is %s and not Ready", p.Name, p.Status.Phase))
		}
	}
	return errors.Join(problems...)
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

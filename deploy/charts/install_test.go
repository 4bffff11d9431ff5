package charts

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/weftmesh/weft/deploy/crds"
	"github.com/weftmesh/weft/testenv"
)

// ourLabels select every object the chart makes (and the pods and
// ReplicaSets its Deployment makes).
const ourLabels = "app.kubernetes.io/name=weft,app.kubernetes.io/instance=" + Release

// chartKinds are the kinds the chart makes, with those its Deployment makes:
// after an uninstall none may carry ourLabels but the kept CRDs.
var chartKinds = []schema.GroupVersionResource{
	{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "secrets"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "pods"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "replicasets"},
	{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
}

var crdNames = []string{"serviceprofiles.linkerd.io", "trafficsplits.split.smi-spec.io"}

func kube(t *testing.T) genericclioptions.RESTClientGetter {
	t.Helper()
	testenv.RequireEnv(t, env)
	cf := genericclioptions.NewConfigFlags(false)
	cf.KubeConfig = &env.Kubeconfig
	cacheDir := t.TempDir()
	cf.CacheDir = &cacheDir
	return cf
}

func install(t *testing.T, o Options) string {
	t.Helper()
	rel, err := Install(t.Context(), kube(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return rel.Manifest
}

func uninstall(t *testing.T, o Options) {
	t.Helper()
	if _, err := Uninstall(kube(t), o); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// deleteCRDs removes the two CRDs (kept by every uninstall) so a test starts
// from a cluster without them. It runs in cleanups too, after t.Context ends.
func deleteCRDs(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions()
	for _, name := range crdNames {
		if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := c.Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("CRD %s not deleted: %v", name, err)
		}
	}
}

// requireApplied checks that every object of the manifest is in the cluster.
func requireApplied(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.Decode([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		m, err := env.RESTMapper().RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			env.RESTMapper().Reset()
			if m, err = env.RESTMapper().RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version); err != nil {
				t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
		if _, err := env.Dynamic.Resource(m.Resource).Namespace(o.GetNamespace()).Get(t.Context(), o.GetName(), metav1.GetOptions{}); err != nil {
			t.Errorf("%s %s/%s of the release is not in the cluster: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return objs
}

// requireServed waits until the apiserver serves the CRD's resource.
func requireServed(t *testing.T, groupVersion, resource string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		list, err := env.Clientset.Discovery().ServerResourcesForGroupVersion(groupVersion)
		if err != nil {
			return false, nil
		}
		return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == resource }), nil
	})
	if err != nil {
		t.Fatalf("%s %s not served: %v", groupVersion, resource, err)
	}
}

// leftovers lists what carries ourLabels across chartKinds.
func leftovers(ctx context.Context) ([]string, error) {
	var out []string
	for _, gvr := range chartKinds {
		list, err := env.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: ourLabels})
		if err != nil {
			return nil, err
		}
		for _, o := range list.Items {
			out = append(out, gvr.Resource+"/"+strings.TrimPrefix(o.GetNamespace()+"/"+o.GetName(), "/"))
		}
	}
	// Helm's own release records.
	secrets, err := env.Clientset.CoreV1().Secrets(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + Release})
	if err != nil {
		return nil, err
	}
	for _, s := range secrets.Items {
		out = append(out, "helm release secret "+s.Name)
	}
	return out, nil
}

func deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d, err := env.Clientset.AppsV1().Deployments(Namespace).Get(t.Context(), "weft-cp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s, err := env.Clientset.CoreV1().Secrets(Namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

// TestInstallUpgradeUninstall installs the chart with Helm's SDK into the
// real apiserver (every object accepted, the CRDs served), upgrades it to
// the HA values and then to changed values (generated certificates kept),
// and uninstalls it, which leaves nothing of ours but the CRDs.
func TestInstallUpgradeUninstall(t *testing.T) {
	kube(t)
	deleteCRDs(t)
	t.Cleanup(func() { uninstall(t, Options{}) })

	requireApplied(t, install(t, Options{}))
	requireServed(t, "linkerd.io/v1alpha2", "serviceprofiles")
	requireServed(t, "split.smi-spec.io/v1alpha2", "trafficsplits")
	webhookTLS, issuer := secretData(t, "weft-webhook-tls"), secretData(t, "weft-identity-issuer")

	objs := requireApplied(t, install(t, Options{Values: haValues(t)}))
	if !slices.ContainsFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "PodDisruptionBudget" }) {
		t.Error("the HA release has no PodDisruptionBudget")
	}
	d := deployment(t)
	if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Affinity == nil || d.Spec.Template.Spec.Affinity.PodAntiAffinity == nil {
		t.Errorf("HA Deployment: replicas %d, affinity %+v; want 3 replicas spread by anti-affinity", *d.Spec.Replicas, d.Spec.Template.Spec.Affinity)
	}
	pdb, err := env.Clientset.PolicyV1().PodDisruptionBudgets(Namespace).Get(t.Context(), "weft-cp", metav1.GetOptions{})
	if err != nil || pdb.Spec.MinAvailable.IntValue() != 2 {
		t.Errorf("PodDisruptionBudget weft-cp: %v %+v, want minAvailable 2", err, pdb)
	}

	install(t, Options{Values: map[string]any{"proxy": map[string]any{"logLevel": "debug"}, "identity": map[string]any{"mtls": true}}})
	args := strings.Join(deployment(t).Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"--proxy-log-level=debug", "--mtls", "--identity"} {
		if !strings.Contains(args, want) {
			t.Errorf("upgraded Deployment args %q lack %s", args, want)
		}
	}
	if _, err := env.Clientset.PolicyV1().PodDisruptionBudgets(Namespace).Get(t.Context(), "weft-cp", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("PodDisruptionBudget after upgrading to non-HA values: %v, want NotFound", err)
	}
	for name, before := range map[string]map[string][]byte{"weft-webhook-tls": webhookTLS, "weft-identity-issuer": issuer} {
		after := secretData(t, name)
		for k, v := range before {
			if string(after[k]) != string(v) {
				t.Errorf("Secret %s: %s changed across upgrades; generated material must be kept", name, k)
			}
		}
	}
	injector, err := env.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), "weft-proxy-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(injector.Webhooks[0].ClientConfig.CABundle); got != string(webhookTLS["ca.crt"]) {
		t.Error("weft-proxy-injector's caBundle is not the CA of weft-webhook-tls")
	}

	if found, err := Uninstall(kube(t), Options{}); err != nil || !found {
		t.Fatalf("uninstall: found %v, %v", found, err)
	}
	var left []string
	err = wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		left, err = leftovers(ctx)
		if err != nil {
			return false, err
		}
		left = slices.DeleteFunc(left, func(s string) bool {
			return s == "customresourcedefinitions/"+crdNames[0] || s == "customresourcedefinitions/"+crdNames[1]
		})
		return len(left) == 0, nil
	})
	if err != nil {
		t.Errorf("after uninstall, still there: %v (%v)", left, err)
	}
	for _, name := range crdNames {
		if _, err := env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("CRD %s not kept by uninstall: %v", name, err)
		}
	}
	if found, err := Uninstall(kube(t), Options{}); err != nil || found {
		t.Errorf("second uninstall: found %v, %v; want nothing found, no error", found, err)
	}
}

// TestInstallBesideLinkerd: with Linkerd's ServiceProfile CRD installed
// (by Linkerd's own Helm release), the chart installs and removes only the
// TrafficSplit CRD and leaves Linkerd's alone.
func TestInstallBesideLinkerd(t *testing.T) {
	kube(t)
	deleteCRDs(t)
	t.Cleanup(func() { uninstall(t, Options{}); deleteCRDs(t) })
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c := env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions()
	for _, crd := range all {
		if crd.Name != crdNames[0] {
			continue
		}
		crd.Labels = map[string]string{"linkerd.io/control-plane-ns": "linkerd", "app.kubernetes.io/managed-by": "Helm"}
		crd.Annotations = map[string]string{"meta.helm.sh/release-name": "linkerd-crds", "meta.helm.sh/release-namespace": "linkerd"}
		if _, err := c.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	requireServed(t, "linkerd.io/v1alpha2", "serviceprofiles")
	linkerds, err := c.Get(ctx, crdNames[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	objs := requireApplied(t, install(t, Options{}))
	var ours []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			ours = append(ours, o.GetName())
		}
	}
	if !slices.Equal(ours, crdNames[1:]) {
		t.Errorf("the release installed CRDs %v, want %v only", ours, crdNames[1:])
	}
	requireServed(t, "split.smi-spec.io/v1alpha2", "trafficsplits")
	// An upgrade renders again, now seeing its own TrafficSplit CRD: kept in
	// the release, still leaving Linkerd's out.
	objs = requireApplied(t, install(t, Options{}))
	if n := len(slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() != "CustomResourceDefinition" })); n != 1 {
		t.Errorf("upgrade: %d CRDs in the release, want the TrafficSplit CRD only", n)
	}
	if found, err := Uninstall(kube(t), Options{}); err != nil || !found {
		t.Fatalf("uninstall: found %v, %v", found, err)
	}
	after, err := c.Get(ctx, crdNames[0], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Linkerd's CRD is gone: %v", err)
	}
	if after.ResourceVersion != linkerds.ResourceVersion {
		t.Errorf("Linkerd's CRD was modified (resourceVersion %s -> %s): labels %v, annotations %v",
			linkerds.ResourceVersion, after.ResourceVersion, after.Labels, after.Annotations)
	}
}

// TestInstallCRDsOnly: weft install --crds is a release of its own holding
// the CRDs; the control plane's release then leaves them to it.
func TestInstallCRDsOnly(t *testing.T) {
	kube(t)
	deleteCRDs(t)
	t.Cleanup(func() { uninstall(t, Options{}); uninstall(t, Options{CRDsOnly: true}); deleteCRDs(t) })
	objs := requireApplied(t, install(t, Options{CRDsOnly: true}))
	if len(objs) != 2 {
		t.Errorf("--crds installed %d objects, want the 2 CRDs", len(objs))
	}
	requireServed(t, "linkerd.io/v1alpha2", "serviceprofiles")
	objs = requireApplied(t, install(t, Options{}))
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			t.Errorf("the control plane's release took over CRD %s from %s", o.GetName(), CRDsRelease)
		}
	}
}

// TestInstallCertManagerObjectsAccepted: with certificates from cert-manager
// the apiserver accepts every object (cert-manager's CRDs installed; its
// controllers, which would issue, are not needed for that).
func TestInstallCertManagerObjectsAccepted(t *testing.T) {
	kube(t)
	path, err := testenv.CertManagerCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.InstallCRDs(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uninstall(t, Options{}) })
	requireApplied(t, install(t, Options{Values: map[string]any{
		"certManager": map[string]any{"enabled": true},
		"identity":    map[string]any{"source": "certManager", "externalIssuer": "ClusterIssuer/weft-ca"},
	}}))
}

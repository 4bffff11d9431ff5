package bench

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/controller"
	"github.com/weftmesh/weft/deploy/crds"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/testenv"
	"github.com/weftmesh/weft/translate"
)

// The mesh the bench writes, through the API like any client would:
//
//   - namespaces bench-0 .. bench-<K-1>, annotated for injection;
//   - services svc-<j> in bench-<j mod K>, one HTTP port, no selector: their
//     EndpointSlices are written by the bench (managed-by weft-bench), so
//     the endpoint controllers leave them alone and a change is one write;
//   - pods p-<i> in bench-<i mod K>, one container port, assigned to a
//     scheduler that does not exist (nothing schedules or runs them) and
//     marked Running with an IP by a status write: the control plane only
//     needs a pod that may run to accept its proxy (see the controller's
//     store). kwok would do the same status write, plus its own work per
//     pod, which on two cores would be measured instead of Weft.
//
// Endpoint addresses are not pod IPs: endpoints of services with no
// selector need not be pods, and it keeps a change to one service's
// endpoints from touching any pod.

const (
	servicePort   = 8080
	clusterDomain = "cluster.local"
	schedulerName = "weft-bench-none"
	managedBy     = "weft-bench"
	// Pod and service ranges: testenv's pod CIDR for pod IPs; endpoints and
	// markers from ranges no pod uses.
	serviceCIDR = "10.96.0.0/16"
)

type cluster struct {
	env        *testenv.Env
	client     kubernetes.Interface
	namespaces int
	services   int
	endpoints  int // per service at rest
	pods       int // created so far
}

// newCluster returns a writer with its own unthrottled client: testenv's
// shared client is paced at 200 QPS, which would make 10,000 pods take
// minutes of the tool's own making.
func newCluster(env *testenv.Env, namespaces, services, endpoints int) (*cluster, error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = "weft-bench"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the bench's Kubernetes client: %w", err)
	}
	return &cluster{env: env, client: client, namespaces: namespaces, services: services, endpoints: endpoints}, nil
}

func nsName(i int) string { return fmt.Sprintf("bench-%d", i) }

func (c *cluster) serviceKey(j int) mesh.ServiceKey {
	return mesh.ServiceKey{Namespace: nsName(j % c.namespaces), Name: fmt.Sprintf("svc-%d", j)}
}

func podName(i int) string { return fmt.Sprintf("p-%d", i) }

func (c *cluster) podNode(i int) string {
	return proxy.NodeID(podName(i), nsName(i%c.namespaces))
}

// edsName and rdsName are the xDS names a service's endpoints and routes
// are served under, as translate names them.
func edsName(k mesh.ServiceKey) string {
	return translate.OutboundClusterName(k, servicePort, clusterDomain)
}

func rdsName(k mesh.ServiceKey) string {
	return translate.OutboundRouteName(k, servicePort, clusterDomain)
}

// ipFrom numbers addresses inside a /16 given as its first two octets.
func ipFrom(prefix string, n int) string {
	return fmt.Sprintf("%s.%d.%d", prefix, n/250%256, n%250+1)
}

func restingIP(service, k int) string { return ipFrom("10.245", service*8+k) }

// parallel runs fn for 0..n-1 on a few workers and returns the first error.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(ctx, i) })
	}
	return g.Wait()
}

// setUp installs the CRDs and writes namespaces and services with their
// endpoints; pods come with ensurePods.
func (c *cluster) setUp(ctx context.Context) error {
	defs, err := crds.All()
	if err != nil {
		return fmt.Errorf("reading Weft's CRDs: %w", err)
	}
	for _, d := range defs {
		if _, err := c.env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("installing CRD %s: %w", d.Name, err)
		}
	}
	if err := parallel(ctx, c.namespaces, func(ctx context.Context, i int) error {
		return c.createNamespace(ctx, nsName(i))
	}); err != nil {
		return err
	}
	return parallel(ctx, c.services, func(ctx context.Context, j int) error {
		k := c.serviceKey(j)
		ips := make([]string, c.endpoints)
		for e := range ips {
			ips[e] = restingIP(j, e)
		}
		return c.createService(ctx, k, ips)
	})
}

// createNamespace writes a meshed namespace and waits for its default
// ServiceAccount, without which the apiserver refuses pods.
func (c *cluster) createNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
		Annotations: map[string]string{controller.AnnotationInject: controller.InjectEnabled}}}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return testenv.WaitFor(ctx, time.Minute, "the default ServiceAccount of "+name, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (c *cluster) createService(ctx context.Context, k mesh.ServiceKey, ips []string) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "http", Port: servicePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(servicePort),
		}}},
	}
	if _, err := c.client.CoreV1().Services(k.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service %s/%s: %w", k.Namespace, k.Name, err)
	}
	if _, err := c.client.DiscoveryV1().EndpointSlices(k.Namespace).Create(ctx, endpointSlice(k, ips), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the EndpointSlice of %s/%s: %w", k.Namespace, k.Name, err)
	}
	return nil
}

func endpointSlice(k mesh.ServiceKey, ips []string) *discoveryv1.EndpointSlice {
	port, name, proto, zone, ready := int32(servicePort), "http", corev1.ProtocolTCP, testenv.Zone, true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name + "-bench", Labels: map[string]string{
			discoveryv1.LabelServiceName: k.Name, discoveryv1.LabelManagedBy: managedBy,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{ip}, Zone: &zone, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		})
	}
	return es
}

// setEndpoints replaces a service's endpoints; it returns once the
// apiserver has acknowledged the write.
func (c *cluster) setEndpoints(ctx context.Context, k mesh.ServiceKey, ips []string) error {
	es := endpointSlice(k, ips)
	cur, err := c.client.DiscoveryV1().EndpointSlices(k.Namespace).Get(ctx, es.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the EndpointSlice of %s/%s: %w", k.Namespace, k.Name, err)
	}
	es.ResourceVersion = cur.ResourceVersion
	if _, err := c.client.DiscoveryV1().EndpointSlices(k.Namespace).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating the EndpointSlice of %s/%s: %w", k.Namespace, k.Name, err)
	}
	return nil
}

// ensurePods creates pods p-0 .. p-<n-1> that do not exist yet.
func (c *cluster) ensurePods(ctx context.Context, n int) error {
	if n <= c.pods {
		return nil
	}
	from := c.pods
	err := parallel(ctx, n-from, func(ctx context.Context, i int) error {
		i += from
		return c.createPod(ctx, nsName(i%c.namespaces), podName(i), ipFrom("10.244", i))
	})
	if err != nil {
		return err
	}
	c.pods = n
	return nil
}

// createPod writes a pod and marks it Running with ip, as a kubelet would.
func (c *cluster) createPod(ctx context.Context, ns, name, ip string) error {
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{
			SchedulerName:                schedulerName,
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "app", Image: "weft-bench/app",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: servicePort, Protocol: corev1.ProtocolTCP}}}},
		},
	}
	got, err := c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		if got, err = c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil && got.Status.PodIP == ip {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", ns, name, err)
	}
	now := metav1.Now()
	got.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, StartTime: &now,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	if _, err := c.client.CoreV1().Pods(ns).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("marking pod %s/%s running: %w", ns, name, err)
	}
	return nil
}

// setProfile server-side-applies a ServiceProfile for k with one route
// named route: a new route name is a new route in the service's RDS
// resource.
func (c *cluster) setProfile(ctx context.Context, k mesh.ServiceKey, route string) error {
	sp := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "linkerd.io/v1alpha2",
		"kind":       "ServiceProfile",
		"metadata":   map[string]any{"name": fmt.Sprintf("%s.%s.svc.%s", k.Name, k.Namespace, clusterDomain), "namespace": k.Namespace},
		"spec": map[string]any{"routes": []any{map[string]any{
			"name":      route,
			"condition": map[string]any{"method": "GET", "pathRegex": "/" + route},
			"timeout":   "250ms",
		}}},
	}}
	if _, err := c.env.ApplyObject(ctx, sp); err != nil {
		return fmt.Errorf("writing the ServiceProfile of %s/%s: %w", k.Namespace, k.Name, err)
	}
	return nil
}

func (c *cluster) deleteNamespace(ctx context.Context, name string) error {
	if err := c.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	return nil
}

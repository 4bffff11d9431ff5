package generate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
	"github.com/weftmesh/weft/profiles/generate"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/translate/check"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.profile.yaml golden files")

const protoPath = "testdata/proto"

// goldenCase generates one profile; its printed YAML is
// testdata/<name>.profile.yaml.
type goldenCase struct {
	name   string
	target generate.Target
	// grpc makes the service's port gRPC (appProtocol grpc) in the model
	// the profile is translated against.
	grpc bool
	gen  func(t *testing.T, target generate.Target) (*generate.Result, []byte)
	// warnings are substrings, one per warning expected, in order.
	warnings []string
}

// openAPIFile generates from a file in testdata.
func openAPIFile(t *testing.T, file string, target generate.Target) (*generate.Result, error) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return generate.FromOpenAPI(file, data, target)
}

func fromOpenAPI(file string) func(*testing.T, generate.Target) (*generate.Result, []byte) {
	return func(t *testing.T, target generate.Target) (*generate.Result, []byte) {
		t.Helper()
		res, err := openAPIFile(t, file, target)
		if err != nil {
			t.Fatal(err)
		}
		return res, printYAML(t, res.Profile)
	}
}

func fromProto(file string, services ...string) func(*testing.T, generate.Target) (*generate.Result, []byte) {
	return func(t *testing.T, target generate.Target) (*generate.Result, []byte) {
		t.Helper()
		res, err := generate.FromProto(t.Context(), file, generate.ProtoOptions{ImportPaths: []string{protoPath}, Services: services}, target)
		if err != nil {
			t.Fatal(err)
		}
		return res, printYAML(t, res.Profile)
	}
}

func printYAML(t *testing.T, sp *profiles.ServiceProfile) []byte {
	t.Helper()
	y, err := generate.Marshal(sp, "yaml")
	if err != nil {
		t.Fatal(err)
	}
	return y
}

var goldenCases = []goldenCase{
	{
		name:   "template",
		target: generate.Target{Service: "books", Namespace: "library", ClusterDomain: "cluster.local"},
		gen: func(t *testing.T, target generate.Target) (*generate.Result, []byte) {
			y, err := generate.Template(target)
			if err != nil {
				t.Fatal(err)
			}
			sp, err := generate.TemplateProfile(target)
			if err != nil {
				t.Fatal(err)
			}
			return &generate.Result{Profile: sp}, y
		},
	},
	{
		name:   "bookstore-swagger2",
		target: generate.Target{Service: "bookstore", Namespace: "shop", ClusterDomain: "cluster.local"},
		gen:    fromOpenAPI("testdata/bookstore.swagger.json"),
	},
	{
		name:   "orders-openapi3",
		target: generate.Target{Service: "orders", Namespace: "shop", ClusterDomain: "example.internal"},
		gen:    fromOpenAPI("testdata/orders.openapi.yaml"),
		warnings: []string{
			`testdata/orders.openapi.yaml: the servers have 2 different base paths (/orders/v2, /): the routes use the first, /orders/v2`,
			`testdata/orders.openapi.yaml:135:5: GET /orders/v2/customers/{customerId}/orders: path parameter "customerId" is declared neither by the operation nor by the path`,
		},
	},
	{
		name:   "library-proto",
		target: generate.Target{Service: "library", Namespace: "books", ClusterDomain: "cluster.local"},
		grpc:   true,
		gen:    fromProto("testdata/proto/library/v1/library.proto"),
	},
	{
		name:   "library-proto-shelves",
		target: generate.Target{Service: "shelves", Namespace: "books", ClusterDomain: "cluster.local"},
		grpc:   true,
		gen:    fromProto("testdata/proto/library/v1/library.proto", "ShelfService"),
	},
}

// TestGolden: each generated profile prints as its golden file, decodes
// strictly from what was printed (YAML and JSON alike), passes validation,
// and translates for a client of the service with nothing the checker
// would refuse and every route in the route configuration.
func TestGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			res, printed := c.gen(t, c.target)
			golden := filepath.Join("testdata", c.name+".profile.yaml")
			if *update {
				if err := os.WriteFile(golden, printed, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if want, err := os.ReadFile(golden); err != nil {
				t.Fatalf("%v (run go test ./profiles/generate -update)", err)
			} else if !bytes.Equal(want, printed) {
				t.Errorf("%s differs from the output (run go test ./profiles/generate -update and review the diff):\n%s", golden, printed)
			}
			if len(res.Warnings) != len(c.warnings) {
				t.Errorf("warnings %q, want %d", res.Warnings, len(c.warnings))
			}
			for i := range min(len(res.Warnings), len(c.warnings)) {
				if !strings.Contains(res.Warnings[i], c.warnings[i]) {
					t.Errorf("warning %d: %q, want it to contain %q", i, res.Warnings[i], c.warnings[i])
				}
			}

			sp, err := profiles.DecodeServiceProfile(printed)
			if err != nil {
				t.Fatalf("the printed profile does not decode: %v", err)
			}
			if errs := profiles.ValidateServiceProfile(sp, c.target.ClusterDomain); len(errs) > 0 {
				t.Fatalf("the printed profile is not valid: %v", errs)
			}
			if sp.Name != c.target.ProfileName() || sp.Namespace != c.target.Namespace {
				t.Errorf("metadata %s/%s, want %s/%s", sp.Namespace, sp.Name, c.target.Namespace, c.target.ProfileName())
			}
			if len(sp.Spec.Routes) == 0 {
				t.Fatal("no routes")
			}
			j, err := generate.Marshal(res.Profile, "json")
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, err := profiles.DecodeServiceProfile(j)
			if err != nil {
				t.Fatalf("the JSON output does not decode: %v", err)
			}
			if !reflect.DeepEqual(fromJSON.Spec, sp.Spec) {
				t.Errorf("-o json and -o yaml give different profiles:\n%s", j)
			}

			translateClean(t, sp, c.target, c.grpc)
		})
	}
}

// translateClean builds the smallest mesh that uses sp (the service with
// one ready pod, and a meshed client in its namespace), translates for the
// client and runs the checker.
func translateClean(t *testing.T, sp *profiles.ServiceProfile, target generate.Target, grpc bool) {
	t.Helper()
	port := corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}
	if grpc {
		port.AppProtocol = new(string)
		*port.AppProtocol = "grpc"
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: target.Namespace}}
	pod := func(name, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: target.Namespace, Name: name},
			Spec: corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{
				Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
			Status: corev1.PodStatus{PodIP: ip},
		}
	}
	server, client := pod(target.Service+"-0", "10.0.1.11"), pod("client", "10.0.3.5")
	ready := true
	objs := mesh.Objects{
		Namespaces: []*corev1.Namespace{ns},
		Services: []*corev1.Service{{
			ObjectMeta: metav1.ObjectMeta{Namespace: target.Namespace, Name: target.Service},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"},
				Ports: []corev1.ServicePort{port}, Selector: map[string]string{"app": target.Service}},
		}},
		EndpointSlices: []*discoveryv1.EndpointSlice{{
			ObjectMeta: metav1.ObjectMeta{Namespace: target.Namespace, Name: target.Service + "-abc12",
				Labels: map[string]string{discoveryv1.LabelServiceName: target.Service}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &port.Name, Port: new(int32)}},
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{server.Status.PodIP},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				Zone:       new(string),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: target.Namespace, Name: server.Name},
			}},
		}},
		Pods:            []*corev1.Pod{server, client},
		ServiceProfiles: []*profiles.ServiceProfile{sp},
	}
	*objs.EndpointSlices[0].Ports[0].Port = 8080
	*objs.EndpointSlices[0].Endpoints[0].Zone = "zone-a"
	m, buildErrs := mesh.Build(target.ClusterDomain, objs)
	for _, e := range buildErrs {
		t.Errorf("building the mesh: %v", e)
	}
	p, err := mesh.ProxyFromPod(client, ns)
	if err != nil {
		t.Fatal(err)
	}
	res, errs := translate.NewTranslator(translate.Options{}).ForProxy(m, p)
	for _, e := range errs {
		t.Errorf("translating: %v", e)
	}
	byType := res.ByType()
	delete(byType, resourcev3.SecretType)
	for _, prob := range check.Problems(p.Kind, byType) {
		t.Errorf("the checker finds: %v", prob)
	}

	envoyRoutes := map[string]*routev3.Route{}
	for _, rc := range res.Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				envoyRoutes[r.Name] = r
			}
		}
	}
	for _, r := range sp.Spec.Routes {
		er, ok := envoyRoutes[r.Name]
		if !ok {
			t.Errorf("route %q is not in the translated route configuration", r.Name)
			continue
		}
		if got := er.GetRoute().GetRetryPolicy() != nil; got != r.IsRetryable {
			t.Errorf("route %q: retry policy present %v, isRetryable %v", r.Name, got, r.IsRetryable)
		}
		var want time.Duration
		if r.Timeout != "" {
			want, _ = time.ParseDuration(r.Timeout)
		}
		if got := er.GetRoute().GetTimeout().AsDuration(); got != want {
			t.Errorf("route %q: Envoy timeout %v, profile timeout %q", r.Name, got, r.Timeout)
		}
	}
}

// TestGoldenStable: generating twice gives the same bytes (map order in
// the inputs must not leak into the output).
func TestGoldenStable(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			_, first := c.gen(t, c.target)
			for range 5 {
				if _, again := c.gen(t, c.target); !bytes.Equal(first, again) {
					t.Fatalf("two runs differ:\n%s\n---\n%s", first, again)
				}
			}
		})
	}
}

// TestOpenAPIJSONIndentedWithTabs: JSON indented with tabs (which YAML
// does not allow for indentation) reads as the same document.
func TestOpenAPIJSONIndentedWithTabs(t *testing.T) {
	const file = "testdata/bookstore.swagger.json"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	tabbed, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	target := generate.Target{Service: "bookstore", Namespace: "shop", ClusterDomain: "cluster.local"}
	want, err := generate.FromOpenAPI(file, data, target)
	if err != nil {
		t.Fatal(err)
	}
	got, err := generate.FromOpenAPI(file, tabbed, target)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Profile, want.Profile) {
		t.Errorf("tab-indented JSON gives a different profile")
	}
}

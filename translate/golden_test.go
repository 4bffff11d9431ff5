package translate_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
	"github.com/weftmesh/weft/translate"
)

var update = flag.Bool("update", false, "rewrite translate/testdata golden files and delete stale ones")

const (
	// goldenProxyAnnotation marks the pod whose proxy a case translates for.
	goldenProxyAnnotation = "weft.io/golden-proxy"
	// goldenTrustDomainAnnotation on the case's proxy pod is the
	// translator's trust domain (Options.TrustDomain): absent, mTLS is off.
	goldenTrustDomainAnnotation = "weft.io/golden-trust-domain"
	// goldenTappedAnnotation on the case's proxy pod puts its proxy in the
	// model's tap set (mesh.Model.Tapped), as a `weft tap` session does.
	goldenTappedAnnotation = "weft.io/golden-tapped"
	// goldenInvalidAnnotation marks objects a case expects to be refused;
	// the case is translated again without them and must come out the same.
	goldenInvalidAnnotation = "weft.io/golden-invalid"
	testdataDir             = "testdata"
)

// tapLogService is how the control plane's cp wires the tap logger for
// plaintext xDS: the bootstrap's static xDS cluster.
var tapLogService = &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
	EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: bootstrap.XDSClusterName},
}}

func currentTapLogService() *corev3.GrpcService { return tapLogService }

// goldenKinds are the outputs of a case, one file each.
var goldenKinds = []string{"listeners", "routes", "clusters", "endpoints"}

// goldenCase is a decoded testdata/<name>.in.yaml.
type goldenCase struct {
	name    string
	objects mesh.Objects
	invalid mesh.Objects // the objects marked invalid, also in objects
	proxy   *corev1.Pod
	ns      map[string]*corev1.Namespace
}

func loadGoldenCases(t *testing.T) []*goldenCase {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join(testdataDir, "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no golden cases in testdata")
	}
	var out []*goldenCase
	for _, in := range inputs {
		out = append(out, loadGoldenCase(t, in))
	}
	return out
}

func loadGoldenCase(t *testing.T, path string) *goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".in.yaml"), ns: map[string]*corev1.Namespace{}}
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		invalid := head.Metadata.Annotations[goldenInvalidAnnotation] == "true"
		switch head.Kind {
		case "ServiceProfile":
			sp, err := profiles.DecodeServiceProfile(doc)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			c.objects.ServiceProfiles = append(c.objects.ServiceProfiles, sp)
			if invalid {
				c.invalid.ServiceProfiles = append(c.invalid.ServiceProfiles, sp)
			}
		case "TrafficSplit":
			ts, err := profiles.DecodeTrafficSplit(doc)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			c.objects.TrafficSplits = append(c.objects.TrafficSplits, ts)
			if invalid {
				c.invalid.TrafficSplits = append(c.invalid.TrafficSplits, ts)
			}
		default:
			obj, _, err := strict.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: document %d: %v", path, i, err)
			}
			switch o := obj.(type) {
			case *corev1.Service:
				c.objects.Services = append(c.objects.Services, o)
			case *discoveryv1.EndpointSlice:
				c.objects.EndpointSlices = append(c.objects.EndpointSlices, o)
			case *corev1.Namespace:
				c.objects.Namespaces = append(c.objects.Namespaces, o)
				c.ns[o.Name] = o
			case *corev1.Pod:
				c.objects.Pods = append(c.objects.Pods, o)
				if o.Annotations[goldenProxyAnnotation] == "true" {
					if c.proxy != nil {
						t.Fatalf("%s: two pods are annotated %s", path, goldenProxyAnnotation)
					}
					c.proxy = o
				}
			default:
				t.Fatalf("%s: document %d: unexpected kind %T", path, i, runtime.Object(o))
			}
		}
	}
	if c.proxy == nil {
		t.Fatalf("%s: no pod annotated %s: \"true\"", path, goldenProxyAnnotation)
	}
	return c
}

// without returns the case's objects minus the invalid ones.
func (c *goldenCase) without() mesh.Objects {
	o := c.objects
	o.ServiceProfiles = slices.DeleteFunc(slices.Clone(o.ServiceProfiles), func(sp *profiles.ServiceProfile) bool {
		return slices.Contains(c.invalid.ServiceProfiles, sp)
	})
	o.TrafficSplits = slices.DeleteFunc(slices.Clone(o.TrafficSplits), func(ts *profiles.TrafficSplit) bool {
		return slices.Contains(c.invalid.TrafficSplits, ts)
	})
	return o
}

func (c *goldenCase) hasInvalid() bool {
	return len(c.invalid.ServiceProfiles)+len(c.invalid.TrafficSplits) > 0
}

// translateCase builds the model and translates for the case's proxy.
func translateCase(t *testing.T, c *goldenCase, objs mesh.Objects) (*mesh.Proxy, *translate.Resources, []error) {
	t.Helper()
	m, buildErrs := mesh.Build("cluster.local", objs)
	proxy, err := mesh.ProxyFromPod(c.proxy, c.ns[c.proxy.Namespace])
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	if c.proxy.Annotations[goldenTappedAnnotation] == "true" {
		m.Tapped = map[string]bool{proxy.NodeID(): true}
	}
	opts := translate.Options{TrustDomain: c.proxy.Annotations[goldenTrustDomainAnnotation], TapLogService: currentTapLogService}
	res, errs := translate.NewTranslator(opts).ForProxy(m, proxy)
	var all []error
	for _, e := range buildErrs {
		all = append(all, e)
	}
	return proxy, res, append(all, errs...)
}

func goldenFiles(c *goldenCase, res *translate.Resources, errs []error, t *testing.T) map[string][]byte {
	out := map[string][]byte{
		c.name + ".listeners.yaml": toYAML(t, res.Listeners),
		c.name + ".routes.yaml":    toYAML(t, res.Routes),
		c.name + ".clusters.yaml":  toYAML(t, res.Clusters),
		c.name + ".endpoints.yaml": toYAML(t, res.Endpoints),
	}
	if len(errs) > 0 {
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		y, err := yaml.Marshal(msgs)
		if err != nil {
			t.Fatal(err)
		}
		out[c.name+".errors.yaml"] = y
	}
	return out
}

// TestGolden translates every testdata/<case>.in.yaml and compares with
// <case>.{listeners,routes,clusters,endpoints}.yaml (and .errors.yaml when
// something was refused). go test ./translate -update rewrites them.
func TestGolden(t *testing.T) {
	cases := loadGoldenCases(t)
	want := map[string]bool{}
	for _, c := range cases {
		want[c.name+".in.yaml"] = true
		t.Run(c.name, func(t *testing.T) {
			_, res, errs := translateCase(t, c, c.objects)
			for name, got := range goldenFiles(c, res, errs, t) {
				want[name] = true
				path := filepath.Join(testdataDir, name)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				old, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("%v (run go test ./translate -update)", err)
					continue
				}
				if !bytes.Equal(old, got) {
					t.Errorf("%s differs from the translation (run go test ./translate -update and review the diff):\n%s", path, firstDiff(old, got))
				}
			}
		})
	}
	// Stale outputs: files of cases that are gone or outputs no longer made.
	all, err := filepath.Glob(filepath.Join(testdataDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range all {
		if want[filepath.Base(path)] {
			continue
		}
		if *update {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s is stale (run go test ./translate -update)", path)
	}
}

func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  golden: %s\n  now:    %s", i+1, x, y)
		}
	}
	return ""
}

// TestGoldenInvalidObjectsChangeNothingElse: in a case with objects marked
// invalid, they are reported with their namespace/name and field path, and
// the config is exactly what it is without them.
func TestGoldenInvalidObjectsChangeNothingElse(t *testing.T) {
	n := 0
	for _, c := range loadGoldenCases(t) {
		if !c.hasInvalid() {
			continue
		}
		n++
		t.Run(c.name, func(t *testing.T) {
			_, with, errs := translateCase(t, c, c.objects)
			_, without, _ := translateCase(t, c, c.without())
			for _, sp := range c.invalid.ServiceProfiles {
				if !anyErrorNames(errs, sp.Namespace+"/"+sp.Name, "spec.") {
					t.Errorf("no error names ServiceProfile %s/%s and a field path: %v", sp.Namespace, sp.Name, errs)
				}
			}
			for _, ts := range c.invalid.TrafficSplits {
				if !anyErrorNames(errs, ts.Namespace+"/"+ts.Name, "spec.") {
					t.Errorf("no error names TrafficSplit %s/%s and a field path: %v", ts.Namespace, ts.Name, errs)
				}
			}
			for _, kind := range goldenKinds {
				a, b := resourcesOf(with, kind), resourcesOf(without, kind)
				if len(a) != len(b) {
					t.Fatalf("%s: %d with the invalid objects, %d without", kind, len(a), len(b))
				}
				for i := range a {
					if !proto.Equal(a[i], b[i]) {
						t.Errorf("%s[%d] differs with the invalid objects present", kind, i)
					}
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no golden case has objects marked invalid")
	}
}

func anyErrorNames(errs []error, parts ...string) bool {
	for _, e := range errs {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(e.Error(), p)
		}
		if ok {
			return true
		}
	}
	return false
}

func resourcesOf(r *translate.Resources, kind string) []proto.Message {
	switch kind {
	case "listeners":
		return msgs(r.Listeners)
	case "routes":
		return msgs(r.Routes)
	case "clusters":
		return msgs(r.Clusters)
	default:
		return msgs(r.Endpoints)
	}
}

package mesh

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/proxy"
)

func TestProxyMTLSMode(t *testing.T) {
	strict := map[string]string{AnnotationMTLSMode: MTLSModeValueStrict}
	permissive := map[string]string{AnnotationMTLSMode: MTLSModeValuePermissive}
	tests := []struct {
		name          string
		podAnn, nsAnn map[string]string
		want          MTLSMode
		wantErr       []string // parts of the error; nil: no error
	}{
		{name: "no annotation: permissive", want: MTLSPermissive},
		{name: "namespace strict", nsAnn: strict, want: MTLSStrict},
		{name: "pod strict", podAnn: strict, want: MTLSStrict},
		{name: "pod permissive overrides a strict namespace", podAnn: permissive, nsAnn: strict, want: MTLSPermissive},
		{name: "pod strict overrides a permissive namespace", podAnn: strict, nsAnn: permissive, want: MTLSStrict},
		{
			name:    "bad pod value reads as strict",
			podAnn:  map[string]string{AnnotationMTLSMode: "Strict"},
			want:    MTLSStrict,
			wantErr: []string{"metadata.annotations[config.weft.io/mtls-mode]", `"Strict"`, "permissive", "strict", "read as strict"},
		},
		{
			name:    "bad pod value reads as strict, not as its permissive namespace",
			podAnn:  map[string]string{AnnotationMTLSMode: "permisive"},
			nsAnn:   permissive,
			want:    MTLSStrict,
			wantErr: []string{"metadata.annotations[config.weft.io/mtls-mode]", `"permisive"`},
		},
		{
			name:    "bad namespace value reads as strict, named as the namespace's",
			nsAnn:   map[string]string{AnnotationMTLSMode: "on"},
			want:    MTLSStrict,
			wantErr: []string{"namespace ns metadata.annotations[config.weft.io/mtls-mode]", `"on"`},
		},
		{
			name:   "a good pod value hides a bad namespace value",
			podAnn: permissive, nsAnn: map[string]string{AnnotationMTLSMode: "on"},
			want: MTLSPermissive,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, errs := ProxyFromPod(pod("ns", "web-1", "web", "10.0.0.5", tt.podAnn), namespace("ns", tt.nsAnn))
			if p.MTLSMode != tt.want {
				t.Errorf("mode %v, want %v", p.MTLSMode, tt.want)
			}
			if (len(errs) > 0) != (tt.wantErr != nil) {
				t.Fatalf("errors %v, want an error: %v", errs, tt.wantErr != nil)
			}
			for _, part := range tt.wantErr {
				if !strings.Contains(errs.ToAggregate().Error(), part) {
					t.Errorf("error %q does not contain %q", errs.ToAggregate(), part)
				}
			}
		})
	}
}

// TestPodTerminatesMTLSAgreesWithTheProxy: what clients are told about a
// pod (PodTerminatesMTLS) is what its proxy's inbound side will be built
// from (ProxyFromPod's kind and mode), malformed modes included: a
// proxyless pod's listener is TLS only when its mode is strict.
func TestPodTerminatesMTLSAgreesWithTheProxy(t *testing.T) {
	inject := map[string]string{AnnotationInject: InjectEnabled}
	for _, kind := range []string{"", ProxyKindValueGRPC} {
		for _, podMode := range []string{"", MTLSModeValueStrict, MTLSModeValuePermissive, "Strict", "permisive"} {
			for _, nsMode := range []string{"", MTLSModeValueStrict, "on"} {
				ann, nsAnn := map[string]string{}, maps.Clone(inject)
				if kind != "" {
					ann[AnnotationProxyKind] = kind
				}
				if podMode != "" {
					ann[AnnotationMTLSMode] = podMode
				}
				if nsMode != "" {
					nsAnn[AnnotationMTLSMode] = nsMode
				}
				p, ns := pod("ns", "p", "sa", "10.0.0.1", ann), namespace("ns", nsAnn)
				px, _ := ProxyFromPod(p, ns)
				want := px.Kind == proxy.Envoy || px.MTLSMode == MTLSStrict
				if got := PodTerminatesMTLS(p, ns); got != want {
					t.Errorf("kind %q, pod mode %q, namespace mode %q: PodTerminatesMTLS %v, but the proxy is %s in mode %s",
						kind, podMode, nsMode, got, px.Kind, px.MTLSMode)
				}
			}
		}
	}
}

func TestValidateNamespaceAnnotationsMTLSMode(t *testing.T) {
	for value, wantErr := range map[string]bool{MTLSModeValueStrict: false, MTLSModeValuePermissive: false, "": true, "STRICT": true} {
		errs := ValidateNamespaceAnnotations(namespace("ns", map[string]string{AnnotationMTLSMode: value}))
		if got := len(errs) > 0; got != wantErr {
			t.Errorf("%q: errors %v, want error %v", value, errs, wantErr)
		}
		for _, e := range errs {
			if e.Field != "metadata.annotations[config.weft.io/mtls-mode]" {
				t.Errorf("%q: field %q", value, e.Field)
			}
		}
	}
}

// TestEndpointsMeshed: an endpoint is meshed when its pod is meshed with a
// sidecar, by its own inject annotation or its namespace's, or is a
// proxyless pod in strict mode (its grpc-go server listener is TLS only);
// a permissive proxyless pod, an unmeshed pod and an unknown pod are not.
// The peers summarise it.
func TestEndpointsMeshed(t *testing.T) {
	svc := ServiceFrom(service("ns", "web", nil, svcPort("http", 80, intstr.FromInt32(8080))), nil)
	inject := map[string]string{AnnotationInject: InjectEnabled}
	meshedNS := namespace("meshed", inject)
	plainNS := namespace("ns", nil)
	strictNS := namespace("ns", map[string]string{AnnotationMTLSMode: MTLSModeValueStrict})
	proxyless := map[string]string{AnnotationProxyKind: ProxyKindValueGRPC}
	withMode := func(mode string) map[string]string {
		return map[string]string{AnnotationProxyKind: ProxyKindValueGRPC, AnnotationMTLSMode: mode}
	}
	type podInfo struct {
		pod *corev1.Pod
		ns  *corev1.Namespace
	}
	pods := map[string]podInfo{
		"by-namespace": {pod("ns", "by-namespace", "a", "", nil), meshedNS},
		"by-pod":       {pod("ns", "by-pod", "b", "", inject), plainNS},
		"linkerd":      {pod("ns", "linkerd", "a", "", map[string]string{LinkerdAnnotationInject: InjectEnabled}), plainNS},
		"opted-out":    {pod("ns", "opted-out", "a", "", map[string]string{AnnotationInject: InjectDisabled}), meshedNS},
		"proxyless":    {pod("ns", "proxyless", "c", "", proxyless), meshedNS},
		"strict-pod":   {pod("ns", "strict-pod", "c", "", withMode(MTLSModeValueStrict)), plainNS},
		"strict-ns":    {pod("ns", "strict-ns", "c", "", proxyless), strictNS},
		"permissive":   {pod("ns", "permissive", "c", "", withMode(MTLSModeValuePermissive)), strictNS},
		"bad-mode":     {pod("ns", "bad-mode", "c", "", withMode("Strict")), plainNS},
		"plain":        {pod("ns", "plain", "d", "", nil), plainNS},
	}
	lookup := func(_, name string) (*corev1.Pod, *corev1.Namespace) {
		pi := pods[name]
		return pi.pod, pi.ns
	}
	a, b := Identity{"ns", "a"}, Identity{"ns", "b"}
	tests := []struct {
		name       string
		pods       []string
		wantMeshed []bool // by address order, which is the order of pods
		wantPeers  Peers
	}{
		{"all meshed, two identities", []string{"by-namespace", "by-pod", "linkerd"}, []bool{true, true, true}, Peers{Meshed: true, Identities: []Identity{a, b}}},
		{"an opted-out pod", []string{"by-namespace", "opted-out"}, []bool{true, false}, Peers{Identities: []Identity{a}}},
		{"a permissive proxyless server serves plaintext", []string{"proxyless"}, []bool{false}, Peers{Identities: []Identity{{"ns", "c"}}}},
		{"a proxyless server strict by its own annotation or its namespace's serves TLS", []string{"strict-pod", "strict-ns"}, []bool{true, true}, Peers{Meshed: true, Identities: []Identity{{"ns", "c"}}}},
		{"a proxyless pod permissive in a strict namespace serves plaintext", []string{"permissive", "strict-ns"}, []bool{false, true}, Peers{Identities: []Identity{{"ns", "c"}}}},
		{"a proxyless pod whose mode is malformed is strict: its listener is TLS", []string{"bad-mode"}, []bool{true}, Peers{Meshed: true, Identities: []Identity{{"ns", "c"}}}},
		{"a pod nobody knows", []string{"by-pod", "unknown"}, []bool{true, false}, Peers{Identities: []Identity{b}}},
		{"an unmeshed pod", []string{"plain"}, []bool{false}, Peers{Identities: []Identity{{"ns", "d"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eps []sliceEndpoint
			for i, p := range tt.pods {
				eps = append(eps, sliceEndpoint{addr: "10.0.0." + string(rune('1'+i)), pod: p})
			}
			got := EndpointsFrom(svc, []*discoveryv1.EndpointSlice{endpointSlice("ns", "web", "web-1", map[string]int32{"http": 8080}, eps...)}, lookup)
			var meshed []bool
			for _, e := range got.ByPort["http"] {
				meshed = append(meshed, e.Meshed)
			}
			if !reflect.DeepEqual(meshed, tt.wantMeshed) {
				t.Errorf("meshed %v, want %v", meshed, tt.wantMeshed)
			}
			if !got.Peers.Equal(tt.wantPeers) {
				t.Errorf("peers %+v, want %+v", got.Peers, tt.wantPeers)
			}
		})
	}
}

func TestPeersOf(t *testing.T) {
	a, b := Identity{"ns", "a"}, Identity{"ns", "b"}
	ep := func(id Identity, meshed bool) Endpoint { return Endpoint{Identity: id, Meshed: meshed} }
	tests := []struct {
		name   string
		byPort map[string][]Endpoint
		want   Peers
	}{
		{"no endpoints: not meshed", nil, Peers{}},
		{"one port", map[string][]Endpoint{"http": {ep(b, true), ep(a, true), ep(b, true)}}, Peers{Meshed: true, Identities: []Identity{a, b}}},
		{"identities across ports, one endpoint unmeshed", map[string][]Endpoint{"http": {ep(a, true)}, "admin": {ep(b, false)}}, Peers{Identities: []Identity{a, b}}},
		{"an endpoint without a pod", map[string][]Endpoint{"http": {ep(a, true), {Address: "10.0.0.1"}}}, Peers{Identities: []Identity{a}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PeersOf(tt.byPort); !got.Equal(tt.want) {
				t.Errorf("PeersOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

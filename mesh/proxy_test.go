package mesh

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/proxy"
)

func TestProxyFromPod(t *testing.T) {
	udp := containerPort("dns", 53)
	udp.Protocol = corev1.ProtocolUDP
	tests := []struct {
		name  string
		pod   *corev1.Pod
		nsAnn map[string]string
		want  *Proxy
	}{
		{
			name: "sidecar with defaults",
			pod: pod("ns", "web-1", "web", "10.0.0.5", nil,
				containerPort("http", 8080), containerPort("grpc-api", 9090), containerPort("", 5432), udp,
				containerPort("admin", int32(ProxyAdminPort))),
			want: &Proxy{
				Kind: proxy.Envoy, Pod: "web-1", Namespace: "ns", IP: "10.0.0.5",
				Identity: Identity{Namespace: "ns", ServiceAccount: "web"},
				InboundPorts: []ProxyPort{
					{Name: "", Port: 5432, Protocol: ProtocolOpaque},
					{Name: "http", Port: 8080, Protocol: ProtocolHTTP1},
					{Name: "grpc-api", Port: 9090, Protocol: ProtocolGRPC},
				},
				OpaquePorts: DefaultOpaquePorts,
			},
		},
		{
			name: "proxyless grpc, default service account",
			pod:  pod("ns", "client", "", "10.0.0.6", map[string]string{AnnotationProxyKind: "grpc"}),
			want: &Proxy{
				Kind: proxy.GRPC, Pod: "client", Namespace: "ns", IP: "10.0.0.6",
				Identity:    Identity{Namespace: "ns", ServiceAccount: "default"},
				OpaquePorts: DefaultOpaquePorts,
			},
		},
		{
			name: "pod annotations: opaque by name and range, skip ports (linkerd names)",
			pod: pod("ns", "db", "db", "10.0.0.7", map[string]string{
				AnnotationOpaquePorts:              "pg,7000-7001",
				LinkerdAnnotationSkipInboundPorts:  "9100",
				LinkerdAnnotationSkipOutboundPorts: "443,8000-8002",
				AnnotationProxyKind:                "sidecar",
			}, containerPort("pg", 15432), containerPort("http", 7000), containerPort("metrics", 9100), containerPort("", 3306)),
			want: &Proxy{
				Kind: proxy.Envoy, Pod: "db", Namespace: "ns", IP: "10.0.0.7",
				Identity: Identity{Namespace: "ns", ServiceAccount: "db"},
				InboundPorts: []ProxyPort{
					// 3306 is not opaque: the annotation replaces the defaults.
					{Name: "", Port: 3306, Protocol: ProtocolHTTP1},
					{Name: "http", Port: 7000, Protocol: ProtocolOpaque},
					{Name: "pg", Port: 15432, Protocol: ProtocolOpaque},
				},
				SkipInboundPorts:  []uint32{9100},
				SkipOutboundPorts: []uint32{443, 8000, 8001, 8002},
				OpaquePorts:       []uint32{7000, 7001, 15432},
			},
		},
		{
			name:  "namespace annotations apply when the pod has none",
			pod:   pod("ns", "w", "w", "10.0.0.8", map[string]string{AnnotationSkipInboundPorts: ""}, containerPort("", 8080)),
			nsAnn: map[string]string{AnnotationOpaquePorts: "8080", AnnotationSkipInboundPorts: "8080"},
			want: &Proxy{
				Kind: proxy.Envoy, Pod: "w", Namespace: "ns", IP: "10.0.0.8",
				Identity:     Identity{Namespace: "ns", ServiceAccount: "w"},
				InboundPorts: []ProxyPort{{Port: 8080, Protocol: ProtocolOpaque}},
				OpaquePorts:  []uint32{8080},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProxyFromPod(tt.pod, namespace("ns", tt.nsAnn))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ProxyFromPod =\n%+v\nwant\n%+v", got, tt.want)
			}
			if got.NodeID() != tt.pod.Name+".ns" {
				t.Errorf("NodeID = %q", got.NodeID())
			}
		})
	}
}

func TestProxyFromPodSidecarInitContainerPorts(t *testing.T) {
	p := pod("ns", "p", "sa", "10.0.0.1", nil, containerPort("http", 8080))
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers = []corev1.Container{
		{Name: "native-sidecar", RestartPolicy: &always, Ports: []corev1.ContainerPort{containerPort("http-side", 8081)}},
		{Name: "plain-init", Ports: []corev1.ContainerPort{containerPort("http-init", 8082)}},
	}
	got, err := ProxyFromPod(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []ProxyPort{{Name: "http", Port: 8080, Protocol: ProtocolHTTP1}, {Name: "http-side", Port: 8081, Protocol: ProtocolHTTP1}}
	if !reflect.DeepEqual(got.InboundPorts, want) {
		t.Errorf("InboundPorts = %+v, want %+v", got.InboundPorts, want)
	}
	// The default list must be a copy: callers may not corrupt the package default.
	got.OpaquePorts[0] = 1
	if DefaultOpaquePorts[0] == 1 {
		t.Fatal("Proxy.OpaquePorts aliases DefaultOpaquePorts")
	}
}

// TestProxyFromPodBadAnnotations: a malformed annotation, the pod's or the
// namespace's it inherits, leaves that one field at its default (not at
// the namespace's value) and is named in the errors; the proxy is still
// built with everything else.
func TestProxyFromPodBadAnnotations(t *testing.T) {
	// The proxy of pod p (ports http 8080, metrics 9100) with no annotations,
	// changed by edit.
	defaults := func(edit func(*Proxy)) *Proxy {
		p := &Proxy{
			Kind: proxy.Envoy, Pod: "p", Namespace: "ns", IP: "10.0.0.1",
			Identity: Identity{Namespace: "ns", ServiceAccount: "sa"},
			InboundPorts: []ProxyPort{
				{Name: "http", Port: 8080, Protocol: ProtocolHTTP1},
				{Name: "metrics", Port: 9100, Protocol: ProtocolHTTP1},
			},
			OpaquePorts: DefaultOpaquePorts,
		}
		if edit != nil {
			edit(p)
		}
		return p
	}
	tests := []struct {
		name          string
		podAnn, nsAnn map[string]string
		want          *Proxy
		wantErr       []string // the fields named, in order
	}{
		{
			name:    "bad proxy kind: a sidecar, as the injector gives it",
			podAnn:  map[string]string{AnnotationProxyKind: "envoy"},
			want:    defaults(nil),
			wantErr: []string{"metadata.annotations[weft.io/proxy]"},
		},
		{
			name:    "bad opaque list on pod: the defaults, not the namespace's list",
			podAnn:  map[string]string{LinkerdAnnotationOpaquePorts: "80-70"},
			nsAnn:   map[string]string{AnnotationOpaquePorts: "8080"},
			want:    defaults(nil),
			wantErr: []string{"metadata.annotations[config.linkerd.io/opaque-ports]"},
		},
		{
			name:    "names not allowed in skip lists: nothing skipped",
			podAnn:  map[string]string{AnnotationSkipOutboundPorts: "https"},
			want:    defaults(nil),
			wantErr: []string{"metadata.annotations[config.weft.io/skip-outbound-ports]"},
		},
		{
			name:    "bad skip-inbound on pod: every port served, not the namespace's skip",
			podAnn:  map[string]string{AnnotationSkipInboundPorts: "abc"},
			nsAnn:   map[string]string{AnnotationSkipInboundPorts: "9100"},
			want:    defaults(nil),
			wantErr: []string{"metadata.annotations[config.weft.io/skip-inbound-ports]"},
		},
		{
			name:    "bad namespace list inherited, named as the namespace's",
			nsAnn:   map[string]string{AnnotationSkipInboundPorts: "0"},
			want:    defaults(nil),
			wantErr: []string{"namespace ns metadata.annotations[config.weft.io/skip-inbound-ports]"},
		},
		{
			name: "one bad annotation leaves the good ones applied",
			podAnn: map[string]string{
				AnnotationSkipInboundPorts: "abc", AnnotationSkipOutboundPorts: "443",
				AnnotationOpaquePorts: "metrics", AnnotationProxyKind: "Sidecar",
			},
			want: defaults(func(p *Proxy) {
				p.SkipOutboundPorts = []uint32{443}
				p.InboundPorts[1].Protocol = ProtocolOpaque
				p.OpaquePorts = []uint32{9100}
			}),
			wantErr: []string{"metadata.annotations[weft.io/proxy]", "metadata.annotations[config.weft.io/skip-inbound-ports]"},
		},
		{
			name:   "the pod's own list shadows the namespace's bad one",
			podAnn: map[string]string{AnnotationSkipInboundPorts: "9100"},
			nsAnn:  map[string]string{AnnotationSkipInboundPorts: "0"},
			want: defaults(func(p *Proxy) {
				p.SkipInboundPorts = []uint32{9100}
				p.InboundPorts = p.InboundPorts[:1]
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := ProxyFromPod(pod("ns", "p", "sa", "10.0.0.1", tt.podAnn, containerPort("http", 8080), containerPort("metrics", 9100)),
				namespace("ns", tt.nsAnn))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ProxyFromPod =\n%+v\nwant\n%+v", got, tt.want)
			}
			var fields []string
			for _, e := range errs {
				fields = append(fields, e.Field)
			}
			if !reflect.DeepEqual(fields, tt.wantErr) {
				t.Errorf("errors %v name %q, want %q", errs, fields, tt.wantErr)
			}
		})
	}
}

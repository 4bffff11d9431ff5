package mesh

import (
	"reflect"
	"strings"
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

func TestProxyFromPodBadAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		podAnn  map[string]string
		nsAnn   map[string]string
		wantErr []string
	}{
		{
			name:    "bad proxy kind",
			podAnn:  map[string]string{AnnotationProxyKind: "envoy"},
			wantErr: []string{"pod ns/p", "metadata.annotations[weft.io/proxy]", `"envoy"`},
		},
		{
			name:    "bad opaque list on pod",
			podAnn:  map[string]string{LinkerdAnnotationOpaquePorts: "80-70"},
			wantErr: []string{"pod ns/p", "metadata.annotations[config.linkerd.io/opaque-ports]", "first port is greater than last"},
		},
		{
			name:    "names not allowed in skip lists",
			podAnn:  map[string]string{AnnotationSkipOutboundPorts: "https"},
			wantErr: []string{"metadata.annotations[config.weft.io/skip-outbound-ports]"},
		},
		{
			name:    "bad namespace list inherited",
			nsAnn:   map[string]string{AnnotationSkipInboundPorts: "0"},
			wantErr: []string{"pod ns/p", "namespace ns metadata.annotations[config.weft.io/skip-inbound-ports]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ProxyFromPod(pod("ns", "p", "sa", "10.0.0.1", tt.podAnn), namespace("ns", tt.nsAnn))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A bad namespace list is irrelevant when the pod has its own.
	_, err := ProxyFromPod(pod("ns", "p", "sa", "10.0.0.1", map[string]string{AnnotationSkipInboundPorts: "1"}),
		namespace("ns", map[string]string{AnnotationSkipInboundPorts: "0"}))
	if err != nil {
		t.Errorf("pod's own list should shadow the namespace's bad one: %v", err)
	}
}

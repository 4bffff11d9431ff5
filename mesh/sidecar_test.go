package mesh

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSidecarSettingsFromPod(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name       string
		pod, ns    map[string]string
		check      func(t *testing.T, s SidecarSettings)
		wantErrors []string // substrings, one per error, in order
	}{
		{
			name: "every setting on the pod",
			pod: map[string]string{
				AnnotationSkipSubnets: "10.1.2.3/8, 192.168.0.0/16", AnnotationSkipInboundPorts: "22,8000-8010",
				AnnotationProxyCPURequest: "50m", AnnotationProxyCPULimit: "1", AnnotationProxyMemoryRequest: "32Mi",
				AnnotationProxyMemoryLimit: "256Mi", AnnotationProxyLogLevel: "debug",
				AnnotationProxyImage: "registry.example/envoy", AnnotationProxyVersion: "v1.40.1",
			},
			check: func(t *testing.T, s SidecarSettings) {
				if got := s.SkipSubnets; len(got) != 2 || got[0] != netip.MustParsePrefix("10.0.0.0/8") || got[1] != netip.MustParsePrefix("192.168.0.0/16") {
					t.Errorf("skip subnets %v", got)
				}
				if s.SkipInboundPorts.String() != "22,8000-8010" {
					t.Errorf("skip inbound %q", s.SkipInboundPorts.String())
				}
				if s.CPURequest.Cmp(q("50m")) != 0 || s.CPULimit.Cmp(q("1")) != 0 || s.MemoryRequest.Cmp(q("32Mi")) != 0 || s.MemoryLimit.Cmp(q("256Mi")) != 0 {
					t.Errorf("resources %v %v %v %v", s.CPURequest, s.CPULimit, s.MemoryRequest, s.MemoryLimit)
				}
				if s.LogLevel != "debug" || s.Image != "registry.example/envoy" || s.Version != "v1.40.1" {
					t.Errorf("log level %q image %q version %q", s.LogLevel, s.Image, s.Version)
				}
			},
		},
		{
			name: "linkerd names and the namespace's values",
			pod:  map[string]string{LinkerdAnnotationProxyLogLevel: "warn,linkerd=info"},
			ns:   map[string]string{LinkerdAnnotationSkipSubnets: "172.16.0.0/12", AnnotationProxyLogLevel: "error"},
			check: func(t *testing.T, s SidecarSettings) {
				if s.LogLevel != "warn" {
					t.Errorf("log level %q, want the pod's first bare level", s.LogLevel)
				}
				if len(s.SkipSubnets) != 1 || s.SkipSubnets[0].String() != "172.16.0.0/12" {
					t.Errorf("skip subnets %v, want the namespace's", s.SkipSubnets)
				}
			},
		},
		{
			name: "malformed values leave their fields unset and name the annotation",
			pod: map[string]string{
				AnnotationSkipInboundPorts: "abc", AnnotationProxyCPURequest: "-1", AnnotationProxyMemoryLimit: "lots",
				AnnotationSkipSubnets: "10.0.0.0/8,nope", AnnotationProxyLogLevel: "loud", AnnotationProxyVersion: "v 1",
				AnnotationProxyCPULimit: "2",
			},
			check: func(t *testing.T, s SidecarSettings) {
				if s.SkipInboundPorts != nil || s.CPURequest != nil || s.MemoryLimit != nil || s.SkipSubnets != nil || s.LogLevel != "" || s.Version != "" {
					t.Errorf("malformed values were kept: %+v", s)
				}
				if s.CPULimit == nil || s.CPULimit.Cmp(q("2")) != 0 {
					t.Errorf("a good value beside bad ones was lost: %v", s.CPULimit)
				}
			},
			wantErrors: []string{
				`metadata.annotations[config.weft.io/skip-inbound-ports]: Invalid value: "abc"`,
				`metadata.annotations[config.weft.io/skip-subnets]: Invalid value: "10.0.0.0/8,nope": "nope" is not a CIDR`,
				`metadata.annotations[config.weft.io/proxy-cpu-request]: Invalid value: "-1": must be greater than zero`,
				`metadata.annotations[config.weft.io/proxy-memory-limit]: Invalid value: "lots"`,
				`metadata.annotations[config.weft.io/proxy-log-level]: Invalid value: "loud"`,
				`metadata.annotations[config.weft.io/proxy-version]: Invalid value: "v 1"`,
			},
		},
		{
			name: "a bad namespace value is reported as the namespace's",
			ns:   map[string]string{AnnotationProxyMemoryRequest: "0"},
			check: func(t *testing.T, s SidecarSettings) {
				if s.MemoryRequest != nil {
					t.Errorf("memory request %v", s.MemoryRequest)
				}
			},
			wantErrors: []string{`namespace ns metadata.annotations[config.weft.io/proxy-memory-request]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: tt.pod}}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Annotations: tt.ns}}
			s, errs := SidecarSettingsFromPod(p, ns)
			if len(errs) != len(tt.wantErrors) {
				t.Fatalf("errors %v, want %d", errs, len(tt.wantErrors))
			}
			for i, want := range tt.wantErrors {
				if !strings.Contains(errs[i].Error(), want) {
					t.Errorf("error %d %q does not contain %q", i, errs[i].Error(), want)
				}
			}
			tt.check(t, s)
		})
	}
}

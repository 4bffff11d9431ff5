package mesh

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestServiceFromProtocol(t *testing.T) {
	withAppProtocol := func(p corev1.ServicePort, ap string) corev1.ServicePort {
		p.AppProtocol = &ap
		return p
	}
	tests := []struct {
		name      string
		svcAnn    map[string]string
		nsAnn     map[string]string
		port      corev1.ServicePort
		want      Protocol
		wantTarge uint32
	}{
		{name: "plain port is HTTP/1", port: svcPort("", 8080, intstr.FromInt32(8080)), want: ProtocolHTTP1, wantTarge: 8080},
		{name: "default opaque port", port: svcPort("", 5432, intstr.FromInt32(5432)), want: ProtocolOpaque, wantTarge: 5432},
		{name: "default opaque target port", port: svcPort("", 80, intstr.FromInt32(3306)), want: ProtocolOpaque, wantTarge: 3306},
		{name: "named target is 0", port: svcPort("", 80, intstr.FromString("web")), want: ProtocolHTTP1, wantTarge: 0},
		{name: "unset target defaults to port", port: corev1.ServicePort{Port: 81}, want: ProtocolHTTP1, wantTarge: 81},
		{name: "grpc name", port: svcPort("grpc", 9090, intstr.FromInt32(9090)), want: ProtocolGRPC, wantTarge: 9090},
		{name: "grpc-prefixed name", port: svcPort("grpc-api", 9090, intstr.FromInt32(9090)), want: ProtocolGRPC, wantTarge: 9090},
		{name: "grpc-web name", port: svcPort("grpc-web", 9090, intstr.FromInt32(9090)), want: ProtocolHTTP1, wantTarge: 9090},
		{name: "http2 name", port: svcPort("http2-x", 80, intstr.FromInt32(80)), want: ProtocolHTTP2, wantTarge: 80},
		{name: "h2c name", port: svcPort("h2c", 80, intstr.FromInt32(80)), want: ProtocolHTTP2, wantTarge: 80},
		{name: "tcp name", port: svcPort("tcp-data", 80, intstr.FromInt32(80)), want: ProtocolOpaque, wantTarge: 80},
		{name: "mysql name", port: svcPort("mysql", 80, intstr.FromInt32(80)), want: ProtocolOpaque, wantTarge: 80},
		{name: "upper-case name", port: svcPort("GRPC", 80, intstr.FromInt32(80)), want: ProtocolGRPC, wantTarge: 80},
		{name: "unknown name prefix", port: svcPort("web", 80, intstr.FromInt32(80)), want: ProtocolHTTP1, wantTarge: 80},
		{name: "name beats default opaque", port: svcPort("http", 6379, intstr.FromInt32(6379)), want: ProtocolHTTP1, wantTarge: 6379},
		{name: "appProtocol h2c", port: withAppProtocol(svcPort("", 80, intstr.FromInt32(80)), "kubernetes.io/h2c"), want: ProtocolHTTP2, wantTarge: 80},
		{name: "appProtocol grpc beats name", port: withAppProtocol(svcPort("http", 80, intstr.FromInt32(80)), "grpc"), want: ProtocolGRPC, wantTarge: 80},
		{name: "appProtocol tcp", port: withAppProtocol(svcPort("http", 80, intstr.FromInt32(80)), "tcp"), want: ProtocolOpaque, wantTarge: 80},
		{name: "unknown appProtocol falls to name", port: withAppProtocol(svcPort("grpc", 80, intstr.FromInt32(80)), "example.com/x"), want: ProtocolGRPC, wantTarge: 80},
		{
			name:   "service opaque annotation beats appProtocol",
			svcAnn: map[string]string{AnnotationOpaquePorts: "80"},
			port:   withAppProtocol(svcPort("http", 80, intstr.FromInt32(8080)), "http"), want: ProtocolOpaque, wantTarge: 8080,
		},
		{
			name:   "linkerd annotation range matches target port",
			svcAnn: map[string]string{LinkerdAnnotationOpaquePorts: "8000-8100"},
			port:   svcPort("http", 80, intstr.FromInt32(8080)), want: ProtocolOpaque, wantTarge: 8080,
		},
		{
			name:   "annotation by port name",
			svcAnn: map[string]string{AnnotationOpaquePorts: "db"},
			port:   svcPort("db", 80, intstr.FromInt32(8080)), want: ProtocolOpaque, wantTarge: 8080,
		},
		{
			name:   "annotation replaces the defaults",
			svcAnn: map[string]string{AnnotationOpaquePorts: "9999"},
			port:   svcPort("", 5432, intstr.FromInt32(5432)), want: ProtocolHTTP1, wantTarge: 5432,
		},
		{
			name:   "empty annotation means none opaque",
			svcAnn: map[string]string{AnnotationOpaquePorts: ""},
			port:   svcPort("", 3306, intstr.FromInt32(3306)), want: ProtocolHTTP1, wantTarge: 3306,
		},
		{
			name:   "weft annotation wins over linkerd's",
			svcAnn: map[string]string{AnnotationOpaquePorts: "1", LinkerdAnnotationOpaquePorts: "80"},
			port:   svcPort("", 80, intstr.FromInt32(80)), want: ProtocolHTTP1, wantTarge: 80,
		},
		{
			name:  "namespace annotation applies",
			nsAnn: map[string]string{AnnotationOpaquePorts: "80"},
			port:  svcPort("", 80, intstr.FromInt32(80)), want: ProtocolOpaque, wantTarge: 80,
		},
		{
			name:   "service annotation beats namespace",
			svcAnn: map[string]string{AnnotationOpaquePorts: "81"},
			nsAnn:  map[string]string{AnnotationOpaquePorts: "80"},
			port:   svcPort("", 80, intstr.FromInt32(80)), want: ProtocolHTTP1, wantTarge: 80,
		},
		{
			name:   "malformed service annotation falls back to namespace",
			svcAnn: map[string]string{AnnotationOpaquePorts: "80-"},
			nsAnn:  map[string]string{AnnotationOpaquePorts: "80"},
			port:   svcPort("", 80, intstr.FromInt32(80)), want: ProtocolOpaque, wantTarge: 80,
		},
		{
			name:   "malformed service annotation falls back to defaults",
			svcAnn: map[string]string{AnnotationOpaquePorts: "x y"},
			port:   svcPort("", 3306, intstr.FromInt32(3306)), want: ProtocolOpaque, wantTarge: 3306,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ServiceFrom(service("ns", "svc", tt.svcAnn, tt.port), namespace("ns", tt.nsAnn))
			if len(got.Ports) != 1 {
				t.Fatalf("got %d ports, want 1", len(got.Ports))
			}
			if got.Ports[0].Protocol != tt.want {
				t.Errorf("protocol = %q, want %q", got.Ports[0].Protocol, tt.want)
			}
			if got.Ports[0].TargetPort != tt.wantTarge {
				t.Errorf("target port = %d, want %d", got.Ports[0].TargetPort, tt.wantTarge)
			}
		})
	}
}

func TestServiceFromShape(t *testing.T) {
	udp := svcPort("dns", 53, intstr.FromInt32(53))
	udp.Protocol = corev1.ProtocolUDP
	svc := service("ns", "web", nil, svcPort("http", 80, intstr.FromInt32(8080)), udp)
	svc.Spec.ClusterIPs = []string{"10.96.0.10", "fd00::10"}
	got := ServiceFrom(svc, nil)
	want := &Service{
		Key:        ServiceKey{Namespace: "ns", Name: "web"},
		ClusterIPs: []string{"10.96.0.10", "fd00::10"},
		Ports:      []ServicePort{{Name: "http", Port: 80, Protocol: ProtocolHTTP1, TargetPort: 8080}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceFrom = %+v, want %+v", got, want)
	}
	// The model must not alias the informer's object.
	svc.Spec.ClusterIPs[0] = "changed"
	if got.ClusterIPs[0] != "10.96.0.10" {
		t.Error("ServiceFrom aliases spec.clusterIPs")
	}

	headless := service("ns", "db", nil, svcPort("", 5432, intstr.FromInt32(5432)))
	headless.Spec.ClusterIP, headless.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	if got := ServiceFrom(headless, nil); !got.Headless || len(got.ClusterIPs) != 0 {
		t.Errorf("headless service: Headless=%v ClusterIPs=%v", got.Headless, got.ClusterIPs)
	}

	ext := service("ns", "ext", nil)
	ext.Spec.Type = corev1.ServiceTypeExternalName
	if got := ServiceFrom(ext, nil); got != nil {
		t.Errorf("ExternalName service converted to %+v, want nil", got)
	}
}

func TestValidateAnnotations(t *testing.T) {
	svc := service("ns", "web", map[string]string{AnnotationOpaquePorts: "80,abc def"})
	errs := ValidateServiceAnnotations(svc)
	if len(errs) != 1 || errs[0].Field != "metadata.annotations[config.weft.io/opaque-ports]" {
		t.Fatalf("errors = %v, want one at metadata.annotations[config.weft.io/opaque-ports]", errs)
	}
	ns := namespace("ns", map[string]string{LinkerdAnnotationSkipOutboundPorts: "http"})
	errs = ValidateNamespaceAnnotations(ns)
	if len(errs) != 1 || errs[0].Field != "metadata.annotations[config.linkerd.io/skip-outbound-ports]" {
		t.Fatalf("errors = %v, want one at the skip-outbound annotation", errs)
	}
	if !strings.Contains(errs[0].Error(), `"http" is not a port number or range`) {
		t.Errorf("error %q does not say why", errs[0].Error())
	}
}

func TestParsePortSet(t *testing.T) {
	tests := []struct {
		in         string
		allowNames bool
		wantPorts  []uint32
		wantNames  []string
		wantErr    string
	}{
		{in: "", wantPorts: nil},
		{in: "  ", wantPorts: nil},
		{in: "25", wantPorts: []uint32{25}},
		{in: "25, 587 ,25", wantPorts: []uint32{25, 587}},
		{in: "4000-4002,1", wantPorts: []uint32{1, 4000, 4001, 4002}},
		{in: "mysql,3306", allowNames: true, wantPorts: []uint32{3306}, wantNames: []string{"mysql"}},
		{in: "mysql", wantErr: `"mysql" is not a port number or range`},
		{in: "0", wantErr: "not a port number in 1..65535"},
		{in: "65536", wantErr: "not a port number in 1..65535"},
		{in: "10-5", wantErr: "first port is greater than last"},
		{in: "10-", wantErr: `range "10-"`},
		{in: "1,,2", wantErr: "entry 2 is empty"},
		{in: "-5", allowNames: true, wantErr: "neither a port number"},
		{in: "99999999999999999999", wantErr: "not a port number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			set, err := ParsePortSet(tt.in, tt.allowNames)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := set.Ports(); !reflect.DeepEqual(got, tt.wantPorts) {
				t.Errorf("ports = %v, want %v", got, tt.wantPorts)
			}
			if !reflect.DeepEqual(set.Names, tt.wantNames) {
				t.Errorf("names = %v, want %v", set.Names, tt.wantNames)
			}
		})
	}
}

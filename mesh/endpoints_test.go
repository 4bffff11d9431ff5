package mesh

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestEndpointsFrom(t *testing.T) {
	svc := ServiceFrom(service("ns", "web", nil,
		svcPort("http", 80, intstr.FromString("http")),
		svcPort("admin", 9000, intstr.FromInt32(9000)),
	), nil)
	pods := map[string]*corev1.Pod{
		"ns/web-a": pod("ns", "web-a", "web-sa", "10.0.0.10", nil),
		"ns/web-b": pod("ns", "web-b", "", "10.0.0.9", nil),
	}
	podByName := func(ns, name string) (*corev1.Pod, *corev1.Namespace) { return pods[ns+"/"+name], nil }
	yes, no := ptr(true), ptr(false)

	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   map[string][]Endpoint
	}{
		{
			name: "conditions, zone, node, identity, numeric address order",
			slices: []*discoveryv1.EndpointSlice{endpointSlice("ns", "web", "web-1", map[string]int32{"http": 8080},
				sliceEndpoint{addr: "10.0.0.10", zone: "z1", node: "n1", pod: "web-a"},
				sliceEndpoint{addr: "10.0.0.9", ready: no, serving: yes, terminating: yes, pod: "web-b"},
				sliceEndpoint{addr: "10.0.0.11", ready: no, serving: no, pod: "unknown-pod"},
				sliceEndpoint{addr: "10.0.0.12"},
			)},
			want: map[string][]Endpoint{"http": {
				{Address: "10.0.0.9", Port: 8080, Ready: false, Serving: true, Terminating: true, Pod: "web-b",
					Identity: Identity{Namespace: "ns", ServiceAccount: "default"}},
				{Address: "10.0.0.10", Port: 8080, Ready: true, Serving: true, Zone: "z1", Node: "n1", Pod: "web-a",
					Identity: Identity{Namespace: "ns", ServiceAccount: "web-sa"}},
				{Address: "10.0.0.11", Port: 8080, Pod: "unknown-pod"},
				{Address: "10.0.0.12", Port: 8080, Ready: true, Serving: true},
			}},
		},
		{
			name: "duplicate across slices: the ready copy wins",
			slices: []*discoveryv1.EndpointSlice{
				endpointSlice("ns", "web", "web-b", map[string]int32{"http": 8080}, sliceEndpoint{addr: "10.0.0.10", ready: yes, zone: "new"}),
				endpointSlice("ns", "web", "web-a", map[string]int32{"http": 8080}, sliceEndpoint{addr: "10.0.0.10", ready: no, zone: "old"}),
			},
			want: map[string][]Endpoint{"http": {{Address: "10.0.0.10", Port: 8080, Ready: true, Serving: true, Zone: "new"}}},
		},
		{
			name: "duplicate across slices, same readiness: first slice by name wins",
			slices: []*discoveryv1.EndpointSlice{
				endpointSlice("ns", "web", "web-b", map[string]int32{"http": 8080}, sliceEndpoint{addr: "10.0.0.10", zone: "b"}),
				endpointSlice("ns", "web", "web-a", map[string]int32{"http": 8080}, sliceEndpoint{addr: "10.0.0.10", zone: "a"}),
			},
			want: map[string][]Endpoint{"http": {{Address: "10.0.0.10", Port: 8080, Ready: true, Serving: true, Zone: "a"}}},
		},
		{
			name: "several ports, unknown port names and other services ignored",
			slices: []*discoveryv1.EndpointSlice{
				endpointSlice("ns", "web", "web-1", map[string]int32{"http": 8080, "admin": 9000, "metrics": 9100}, sliceEndpoint{addr: "10.0.0.10"}),
				endpointSlice("ns", "other", "other-1", map[string]int32{"http": 8080}, sliceEndpoint{addr: "10.0.0.99"}),
				endpointSlice("other-ns", "web", "web-1", map[string]int32{"http": 8080}, sliceEndpoint{addr: "10.0.0.98"}),
			},
			want: map[string][]Endpoint{
				"http":  {{Address: "10.0.0.10", Port: 8080, Ready: true, Serving: true}},
				"admin": {{Address: "10.0.0.10", Port: 9000, Ready: true, Serving: true}},
			},
		},
		{
			name: "FQDN slices and nil ports skipped",
			slices: func() []*discoveryv1.EndpointSlice {
				fqdn := endpointSlice("ns", "web", "web-1", map[string]int32{"http": 8080}, sliceEndpoint{addr: "example.com"})
				fqdn.AddressType = discoveryv1.AddressTypeFQDN
				nilPort := endpointSlice("ns", "web", "web-2", nil, sliceEndpoint{addr: "10.0.0.1"})
				nilPort.Ports = []discoveryv1.EndpointPort{{Name: ptr("http")}}
				return []*discoveryv1.EndpointSlice{fqdn, nilPort}
			}(),
			want: map[string][]Endpoint{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EndpointsFrom(svc, tt.slices, podByName)
			if got.Service != svc.Key {
				t.Errorf("Service = %v, want %v", got.Service, svc.Key)
			}
			if !reflect.DeepEqual(got.ByPort, tt.want) {
				t.Errorf("ByPort =\n%+v\nwant\n%+v", got.ByPort, tt.want)
			}
			// Same input in reverse order gives the same output.
			rev := make([]*discoveryv1.EndpointSlice, len(tt.slices))
			for i, s := range tt.slices {
				rev[len(rev)-1-i] = s
			}
			if again := EndpointsFrom(svc, rev, podByName); !reflect.DeepEqual(again, got) {
				t.Errorf("result depends on slice order:\n%+v\n%+v", got, again)
			}
		})
	}
}

func TestEndpointsFromNilPodLookup(t *testing.T) {
	svc := ServiceFrom(service("ns", "web", nil, svcPort("", 80, intstr.FromInt32(80))), nil)
	got := EndpointsFrom(svc, []*discoveryv1.EndpointSlice{
		endpointSlice("ns", "web", "web-1", map[string]int32{"": 80}, sliceEndpoint{addr: "10.0.0.1", pod: "p"}),
	}, nil)
	want := []Endpoint{{Address: "10.0.0.1", Port: 80, Ready: true, Serving: true, Pod: "p"}}
	if !reflect.DeepEqual(got.ByPort[""], want) {
		t.Errorf("ByPort[\"\"] = %+v, want %+v", got.ByPort[""], want)
	}
}

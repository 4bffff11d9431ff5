package mesh

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/weftmesh/weft/profiles"
)

func booksProfileSpec() profiles.ServiceProfileSpec {
	return profiles.ServiceProfileSpec{
		Routes: []*profiles.RouteSpec{
			{
				Name:      "GET /books/{id}",
				Condition: &profiles.RequestMatch{Method: "GET", PathRegex: `/books/\d+`},
				ResponseClasses: []*profiles.ResponseClass{
					{Condition: &profiles.ResponseMatch{Status: &profiles.Range{Min: 500, Max: 599}}, IsFailure: true},
				},
				IsRetryable: true,
				Timeout:     "300ms",
			},
			{
				Name: "not GET",
				Condition: &profiles.RequestMatch{
					All: []*profiles.RequestMatch{{Not: &profiles.RequestMatch{Method: "GET"}}, {Any: []*profiles.RequestMatch{{PathRegex: "/a"}, {PathRegex: "/b"}}}},
				},
			},
		},
		RetryBudget: &profiles.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 5, TTL: "11s"},
		DstOverrides: []*profiles.WeightedDst{
			{Authority: "books.ns.svc.cluster.local:7002", Weight: quantity("1")},
			{Authority: "books-v2.ns.svc.cluster.local", Weight: quantity("500m")},
		},
		OpaquePorts: map[uint32]struct{}{3306: {}, 25: {}},
	}
}

func TestProfileFrom(t *testing.T) {
	got, errs := ProfileFrom(serviceProfile("client-ns", "books.ns.svc.cluster.local", booksProfileSpec()), "cluster.local")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := &Profile{
		Source:  ObjectRef{Kind: "ServiceProfile", Namespace: "client-ns", Name: "books.ns.svc.cluster.local"},
		Service: ServiceKey{Namespace: "ns", Name: "books"},
		Routes: []Route{
			{
				Name:  "GET /books/{id}",
				Match: RequestMatch{Method: "GET", PathRegex: `/books/\d+`},
				ResponseClasses: []ResponseClass{
					{Match: ResponseMatch{Status: &StatusRange{Min: 500, Max: 599}}, IsFailure: true},
				},
				IsRetryable: true,
				Timeout:     300 * time.Millisecond,
			},
			{
				Name: "not GET",
				Match: RequestMatch{All: []RequestMatch{
					{Not: &RequestMatch{Method: "GET"}},
					{Any: []RequestMatch{{PathRegex: "/a"}, {PathRegex: "/b"}}},
				}},
			},
		},
		RetryBudget: &RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 5, TTL: 11 * time.Second},
		DstOverrides: []WeightedBackend{
			{Service: ServiceKey{Namespace: "ns", Name: "books"}, Port: 7002, Weight: 1000},
			{Service: ServiceKey{Namespace: "ns", Name: "books-v2"}, Port: 0, Weight: 500},
		},
		OpaquePorts: []uint32{25, 3306},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ProfileFrom =\n%+v\nwant\n%+v", got, want)
	}
}

func TestProfileFromInvalid(t *testing.T) {
	tests := []struct {
		name     string
		profile  string
		mutate   func(*profiles.ServiceProfileSpec)
		wantPath string
	}{
		{name: "name in another domain", profile: "books.ns.svc.example.org", wantPath: "metadata.name"},
		{name: "bad timeout", mutate: func(s *profiles.ServiceProfileSpec) { s.Routes[1].Timeout = "one-second" }, wantPath: "spec.routes[1].timeout"},
		{name: "bad weight", mutate: func(s *profiles.ServiceProfileSpec) { s.DstOverrides[1].Weight = quantity("0.1m") }, wantPath: "spec.dstOverrides[1].weight"},
		{name: "bad authority", mutate: func(s *profiles.ServiceProfileSpec) { s.DstOverrides[0].Authority = "books:80" }, wantPath: "spec.dstOverrides[0].authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := booksProfileSpec()
			if tt.mutate != nil {
				tt.mutate(&spec)
			}
			name := tt.profile
			if name == "" {
				name = "books.ns.svc.cluster.local"
			}
			got, errs := ProfileFrom(serviceProfile("ns", name, spec), "cluster.local")
			if got != nil {
				t.Errorf("invalid profile converted: %+v", got)
			}
			if len(errs) != 1 || errs[0].Field != tt.wantPath {
				t.Fatalf("errors = %v, want one at %s", errs, tt.wantPath)
			}
		})
	}
}

func TestSplitFrom(t *testing.T) {
	existing := map[ServiceKey]bool{{Namespace: "ns", Name: "web"}: true, {Namespace: "ns", Name: "web-v1"}: true, {Namespace: "ns", Name: "web-v2"}: true}
	exists := func(k ServiceKey) bool { return existing[k] }

	got, errs := SplitFrom(trafficSplit("ns", "web-split", "web",
		profiles.SplitBackend{Service: "web-v1", Weight: 900}, profiles.SplitBackend{Service: "web-v2", Weight: 100}), exists)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := &Split{
		Source: ObjectRef{Kind: "TrafficSplit", Namespace: "ns", Name: "web-split"},
		Apex:   ServiceKey{Namespace: "ns", Name: "web"},
		Backends: []WeightedBackend{
			{Service: ServiceKey{Namespace: "ns", Name: "web-v1"}, Weight: 900},
			{Service: ServiceKey{Namespace: "ns", Name: "web-v2"}, Weight: 100},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SplitFrom = %+v, want %+v", got, want)
	}

	tests := []struct {
		name      string
		split     *profiles.TrafficSplit
		wantPaths []string
	}{
		{
			name:      "missing backend service",
			split:     trafficSplit("ns", "s", "web", profiles.SplitBackend{Service: "web-v1", Weight: 1}, profiles.SplitBackend{Service: "web-v3", Weight: 1}),
			wantPaths: []string{"spec.backends[1].service"},
		},
		{
			name:      "missing apex",
			split:     trafficSplit("ns", "s", "nope", profiles.SplitBackend{Service: "web-v1", Weight: 1}),
			wantPaths: []string{"spec.service"},
		},
		{
			name:      "negative weight",
			split:     trafficSplit("ns", "s", "web", profiles.SplitBackend{Service: "web-v1", Weight: -1}),
			wantPaths: []string{"spec.backends[0].weight"},
		},
		{
			name:      "all weights zero",
			split:     trafficSplit("ns", "s", "web", profiles.SplitBackend{Service: "web-v1", Weight: 0}),
			wantPaths: []string{"spec.backends"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := SplitFrom(tt.split, exists)
			if got != nil {
				t.Errorf("invalid split converted: %+v", got)
			}
			var paths []string
			for _, e := range errs {
				paths = append(paths, e.Field)
			}
			if !reflect.DeepEqual(paths, tt.wantPaths) {
				t.Errorf("error paths = %v, want %v (%v)", paths, tt.wantPaths, errs)
			}
		})
	}
}

func buildObjects() Objects {
	return Objects{
		Namespaces: []*corev1.Namespace{namespace("books", nil), namespace("client", nil)},
		Services: []*corev1.Service{
			service("books", "webapp", nil, svcPort("http", 7000, intstr.FromInt32(7000))),
			service("books", "books", nil, svcPort("http", 7002, intstr.FromInt32(7002))),
			service("books", "books-v2", nil, svcPort("http", 7002, intstr.FromInt32(7002))),
			service("books", "authors", map[string]string{AnnotationOpaquePorts: "7001-"}, svcPort("http", 7001, intstr.FromInt32(7001))),
		},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			endpointSlice("books", "books", "books-abc", map[string]int32{"http": 7002}, sliceEndpoint{addr: "10.1.0.2", pod: "books-1"}),
			endpointSlice("books", "ghost", "ghost-abc", map[string]int32{"http": 1}, sliceEndpoint{addr: "10.1.0.9"}),
		},
		Pods: []*corev1.Pod{pod("books", "books-1", "books", "10.1.0.2", nil, containerPort("http", 7002))},
		ServiceProfiles: []*profiles.ServiceProfile{
			serviceProfile("books", "books.books.svc.cluster.local", profiles.ServiceProfileSpec{Routes: []*profiles.RouteSpec{
				{Name: "list", Condition: &profiles.RequestMatch{PathRegex: "/books"}},
			}}),
			// Client-side override of the same service, from another namespace.
			serviceProfile("client", "books.books.svc.cluster.local", profiles.ServiceProfileSpec{Routes: []*profiles.RouteSpec{
				{Name: "list", Condition: &profiles.RequestMatch{PathRegex: "/books"}, Timeout: "1s"},
			}}),
			serviceProfile("books", "webapp.books.svc.cluster.local", profiles.ServiceProfileSpec{Routes: []*profiles.RouteSpec{
				{Name: "ok", Condition: &profiles.RequestMatch{Method: "GET"}},
				{Name: "ok2", Condition: &profiles.RequestMatch{Method: "GET"}},
				{Name: "bad", Condition: &profiles.RequestMatch{PathRegex: "(unclosed"}, Timeout: "one-second"},
			}}),
		},
		TrafficSplits: []*profiles.TrafficSplit{
			trafficSplit("books", "books-split", "books", profiles.SplitBackend{Service: "books", Weight: 900}, profiles.SplitBackend{Service: "books-v2", Weight: 100}),
			trafficSplit("books", "zz-books-split", "books", profiles.SplitBackend{Service: "books", Weight: 1}),
			trafficSplit("books", "broken", "webapp", profiles.SplitBackend{Service: "webapp-v9", Weight: 1}),
		},
	}
}

func TestBuild(t *testing.T) {
	m, errs := Build("cluster.local", buildObjects())

	if got := len(m.Services); got != 4 {
		t.Errorf("%d services, want 4", got)
	}
	if got := m.Services[ServiceKey{"books", "authors"}]; got == nil || got.Ports[0].Protocol != ProtocolHTTP1 {
		t.Errorf("service with a bad annotation must still be built with the annotation ignored: %+v", got)
	}
	eps := m.Endpoints[ServiceKey{"books", "books"}]
	if eps == nil || len(eps.ByPort["http"]) != 1 || eps.ByPort["http"][0].Identity != (Identity{"books", "books"}) {
		t.Errorf("endpoints of books/books = %+v", eps)
	}
	if _, ok := m.Endpoints[ServiceKey{"books", "ghost"}]; ok {
		t.Error("endpoints built for a service that does not exist")
	}
	if len(m.Endpoints) != 1 {
		t.Errorf("%d endpoint sets, want 1", len(m.Endpoints))
	}

	server := m.Profiles[ProfileKey{Namespace: "books", Service: ServiceKey{"books", "books"}}]
	client := m.Profiles[ProfileKey{Namespace: "client", Service: ServiceKey{"books", "books"}}]
	if server == nil || client == nil || client.Routes[0].Timeout != time.Second || server.Routes[0].Timeout != 0 {
		t.Errorf("profiles: server %+v, client %+v", server, client)
	}
	if _, ok := m.Profiles[ProfileKey{Namespace: "books", Service: ServiceKey{"books", "webapp"}}]; ok {
		t.Error("invalid profile was kept")
	}
	if len(m.Profiles) != 2 {
		t.Errorf("%d profiles, want 2", len(m.Profiles))
	}

	split := m.Splits[ServiceKey{"books", "books"}]
	if split == nil || split.Source.Name != "books-split" || len(split.Backends) != 2 {
		t.Errorf("split for books/books = %+v", split)
	}
	if len(m.Splits) != 1 {
		t.Errorf("%d splits, want 1", len(m.Splits))
	}

	type want struct {
		object   ObjectRef
		contains []string
	}
	wants := []want{
		{ObjectRef{"Service", "books", "authors"}, []string{"metadata.annotations[config.weft.io/opaque-ports]"}},
		{ObjectRef{"ServiceProfile", "books", "webapp.books.svc.cluster.local"}, []string{
			"ServiceProfile books/webapp.books.svc.cluster.local: ",
			"spec.routes[2].condition.pathRegex",
			"spec.routes[2].timeout",
			`time: invalid duration "one-second"`,
		}},
		{ObjectRef{"TrafficSplit", "books", "broken"}, []string{"spec.backends[0].service: Not found", "webapp-v9"}},
		{ObjectRef{"TrafficSplit", "books", "zz-books-split"}, []string{`spec.service: Duplicate value: "books"`, "TrafficSplit books/books-split, created at the same time and first by name, already splits service books/books"}},
	}
	if len(errs) != len(wants) {
		t.Fatalf("%d errors, want %d: %v", len(errs), len(wants), errs)
	}
	for i, w := range wants {
		if errs[i].Object != w.object {
			t.Errorf("error %d is about %v, want %v", i, errs[i].Object, w.object)
		}
		for _, c := range w.contains {
			if !strings.Contains(errs[i].Error(), c) {
				t.Errorf("error %d %q does not contain %q", i, errs[i].Error(), c)
			}
		}
		var fe *field.Error
		if !errors.As(errs[i], &fe) {
			t.Errorf("error %d does not carry a *field.Error", i)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	objs := buildObjects()
	m1, errs1 := Build("cluster.local", objs)

	reversed := Objects{}
	rev := func(n int, f func(i int)) {
		for i := n - 1; i >= 0; i-- {
			f(i)
		}
	}
	rev(len(objs.Namespaces), func(i int) { reversed.Namespaces = append(reversed.Namespaces, objs.Namespaces[i]) })
	rev(len(objs.Services), func(i int) { reversed.Services = append(reversed.Services, objs.Services[i]) })
	rev(len(objs.EndpointSlices), func(i int) { reversed.EndpointSlices = append(reversed.EndpointSlices, objs.EndpointSlices[i]) })
	rev(len(objs.Pods), func(i int) { reversed.Pods = append(reversed.Pods, objs.Pods[i]) })
	rev(len(objs.ServiceProfiles), func(i int) {
		reversed.ServiceProfiles = append(reversed.ServiceProfiles, objs.ServiceProfiles[i])
	})
	rev(len(objs.TrafficSplits), func(i int) { reversed.TrafficSplits = append(reversed.TrafficSplits, objs.TrafficSplits[i]) })
	// nil entries (a deleted object racing a list) are ignored.
	reversed.Services = append(reversed.Services, nil)
	reversed.ServiceProfiles = append(reversed.ServiceProfiles, nil)

	m2, errs2 := Build("cluster.local", reversed)
	if !reflect.DeepEqual(m1, m2) {
		t.Error("model depends on input order")
	}
	if len(errs1) != len(errs2) {
		t.Fatalf("errors differ: %v vs %v", errs1, errs2)
	}
	for i := range errs1 {
		if errs1[i].Error() != errs2[i].Error() {
			t.Errorf("error %d differs: %q vs %q", i, errs1[i], errs2[i])
		}
	}
}

func TestBuildEmpty(t *testing.T) {
	m, errs := Build("cluster.local", Objects{})
	if len(errs) != 0 || m.ClusterDomain != "cluster.local" || m.Services == nil || m.Endpoints == nil || m.Profiles == nil || m.Splits == nil {
		t.Errorf("empty build: %+v, %v", m, errs)
	}
}

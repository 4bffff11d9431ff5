package proxy

import "testing"

func TestNodeIDRoundTrip(t *testing.T) {
	cases := []struct {
		name, id, pod, ns string
		ok                bool
	}{
		{name: "plain", id: "web-1.demo", pod: "web-1", ns: "demo", ok: true},
		{name: "dotted pod name", id: "web.v2-1.demo", pod: "web.v2-1", ns: "demo", ok: true},
		{name: "no namespace", id: "web"},
		{name: "empty pod", id: ".demo"},
		{name: "empty namespace", id: "web."},
		{name: "empty", id: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod, ns, err := ParseNodeID(tc.id)
			if (err == nil) != tc.ok || pod != tc.pod || ns != tc.ns {
				t.Fatalf("ParseNodeID(%q) = %q, %q, %v; want %q, %q, ok=%v", tc.id, pod, ns, err, tc.pod, tc.ns, tc.ok)
			}
			if !tc.ok {
				return
			}
			if got := NodeID(pod, ns); got != tc.id {
				t.Errorf("NodeID(%q, %q) = %q, want %q back", pod, ns, got, tc.id)
			}
		})
	}
}

func TestKindOfUserAgent(t *testing.T) {
	cases := []struct {
		userAgent string
		want      Kind
	}{
		{"envoy", Envoy},
		{"", Envoy},
		{"gRPC Go", GRPC},
		{"gRPC Java", GRPC},
		{"grpc-c++", GRPC},
	}
	for _, tc := range cases {
		if got := KindOfUserAgent(tc.userAgent); got != tc.want {
			t.Errorf("KindOfUserAgent(%q) = %v, want %v", tc.userAgent, got, tc.want)
		}
	}
}

func TestKindString(t *testing.T) {
	cases := []struct {
		kind  Kind
		want  string
		valid bool
	}{
		{Envoy, "envoy", true},
		{GRPC, "grpc", true},
		{Kind(7), "Kind(7)", false},
	}
	for _, tc := range cases {
		if got := tc.kind.String(); got != tc.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tc.kind), got, tc.want)
		}
		if got := tc.kind.Valid(); got != tc.valid {
			t.Errorf("Kind(%d).Valid() = %v, want %v", int(tc.kind), got, tc.valid)
		}
	}
}

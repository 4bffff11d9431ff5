package telemetry

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func TestFormatValues(t *testing.T) {
	cases := []struct {
		name, got, want string
	}{
		{"success full", FormatSuccess(ptr(1.0)), "100.00%"},
		{"success partial", FormatSuccess(ptr(0.995)), "99.50%"},
		{"success none", FormatSuccess(nil), "-"},
		{"rps", FormatRPS(1.23), "1.2rps"},
		{"rps none", FormatRPS(0), "-"},
		{"latency ms", FormatLatency(5 * time.Millisecond), "5ms"},
		{"latency rounds", FormatLatency(123600 * time.Microsecond), "124ms"},
		{"latency sub-ms", FormatLatency(500 * time.Microsecond), "0.5ms"},
		{"latency none", FormatLatency(0), "-"},
		{"secured", FormatSecured(ptr(true)), "√"},
		{"plaintext", FormatSecured(ptr(false)), "×"},
		{"no evidence", FormatSecured(nil), "-"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestPrint(t *testing.T) {
	stat := Table{Resource: ResourceDeployment, Rows: []Row{
		{Namespace: "shop", Name: "web", Meshed: "2/2", SuccessRate: ptr(0.5), RPS: 2, P50: 5 * time.Millisecond, P95: 10 * time.Millisecond, P99: 20 * time.Millisecond, TCPConnections: 3},
		{Namespace: "shop", Name: "api", Meshed: "1/1"},
	}}
	routes := Table{Resource: ResourceRoute, Rows: []Row{
		{Name: DefaultRoute, Dst: "web", SuccessRate: ptr(1.0), RPS: 1, EffectiveSuccess: ptr(1.0), EffectiveRPS: 1, ActualSuccess: ptr(1.0), ActualRPS: 1},
		{Name: "GET /items", Dst: "web", SuccessRate: ptr(0.9), RPS: 10, P50: 3 * time.Millisecond, EffectiveSuccess: ptr(0.9), EffectiveRPS: 10, ActualSuccess: ptr(0.6), ActualRPS: 15},
	}}
	edges := Table{Resource: ResourceEdge, Rows: []Row{
		{Namespace: "shop", Src: "web", Dst: "api", DstNamespace: "shop", Secured: ptr(true), ClientID: "spiffe://cluster.local/ns/shop/sa/web", ServerID: "spiffe://cluster.local/ns/shop/sa/api"},
	}}
	cases := []struct {
		name  string
		table Table
		opts  PrintOptions
		want  string
	}{
		{"stat sorted", stat, PrintOptions{}, `
NAME   MESHED   SUCCESS   RPS      LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
api    1/1      -         -        -             -             -             0
web    2/2      50.00%    2.0rps   5ms           10ms          20ms          3
`},
		{"stat -A", stat, PrintOptions{AllNamespaces: true}, `
NAMESPACE   NAME   MESHED   SUCCESS   RPS      LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
shop        api    1/1      -         -        -             -             -             0
shop        web    2/2      50.00%    2.0rps   5ms           10ms          20ms          3
`},
		{"namespaces never repeat the namespace", Table{Resource: ResourceNamespace, Rows: []Row{{Namespace: "shop", Name: "shop", Meshed: "3/3"}}}, PrintOptions{AllNamespaces: true}, `
NAME   MESHED   SUCCESS   RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN
shop   3/3      -         -     -             -             -             0
`},
		{"routes default last", routes, PrintOptions{}, `
ROUTE        SERVICE   SUCCESS   RPS       LATENCY_P50   LATENCY_P95   LATENCY_P99
GET /items   web       90.00%    10.0rps   3ms           -             -
[DEFAULT]    web       100.00%   1.0rps    -             -             -
`},
		{"routes wide", routes, PrintOptions{Output: OutputWide}, `
ROUTE        SERVICE   EFFECTIVE_SUCCESS   EFFECTIVE_RPS   ACTUAL_SUCCESS   ACTUAL_RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99
GET /items   web       90.00%              10.0rps         60.00%           15.0rps      3ms           -             -
[DEFAULT]    web       100.00%             1.0rps          100.00%          1.0rps       -             -             -
`},
		{"edges", edges, PrintOptions{}, `
SRC   DST   SRC_NS   DST_NS   SECURED
web   api   shop     shop     √
`},
		{"edges wide", edges, PrintOptions{Output: OutputWide}, `
SRC   DST   SRC_NS   DST_NS   CLIENT_ID                               SERVER_ID                               SECURED
web   api   shop     shop     spiffe://cluster.local/ns/shop/sa/web   spiffe://cluster.local/ns/shop/sa/api   √
`},
		{"empty", Table{Resource: ResourcePod}, PrintOptions{}, `
No traffic found.
`},
		{"json", Table{Resource: ResourcePod, Rows: []Row{{Namespace: "shop", Name: "web-0", Meshed: "1/1", SuccessRate: ptr(1.0), RPS: 0.5, P50: 1500 * time.Microsecond}}}, PrintOptions{Output: OutputJSON}, `
[
  {
    "namespace": "shop",
    "kind": "pod",
    "name": "web-0",
    "meshed": "1/1",
    "success": 1,
    "rps": 0.5,
    "latency_ms_p50": 1.5,
    "latency_ms_p95": null,
    "latency_ms_p99": null,
    "tcp_open_connections": 0
  }
]
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Print(&b, c.table, c.opts); err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimPrefix(c.want, "\n"); b.String() != want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), want)
			}
		})
	}
}

func TestParseTargetAndQuery(t *testing.T) {
	cases := []struct {
		name    string
		q       Query
		wantErr string
	}{
		{"plain", Query{Resource: ResourceDeployment, Namespace: "shop"}, ""},
		{"from", Query{Resource: ResourceDeployment, From: "deploy/web"}, ""},
		{"to svc", Query{Resource: ResourcePod, To: "svc/api"}, ""},
		{"bad resource", Query{Resource: "cronjob"}, `query.resource "cronjob"`},
		{"bad from", Query{Resource: ResourcePod, From: "web"}, `query.from: "web": want KIND/NAME`},
		{"unknown kind", Query{Resource: ResourcePod, To: "cj/x"}, `unknown resource "cj"`},
		{"both", Query{Resource: ResourcePod, From: "deploy/a", To: "deploy/b"}, "give at most one"},
		{"route without service", Query{Resource: ResourceRoute}, "query.name"},
		{"negative window", Query{Resource: ResourcePod, Window: -time.Second}, "query.window"},
	}
	for _, c := range cases {
		err := c.q.Validate()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.wantErr)
		}
	}
	if tg, _ := ParseTarget("deploy/web"); tg.String() != "deploy/web" || tg.Resource != ResourceDeployment {
		t.Errorf("ParseTarget(deploy/web) = %+v", tg)
	}
}

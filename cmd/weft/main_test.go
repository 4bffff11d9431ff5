package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/xds"
)

// update rewrites the golden files: testdata/inject, and testdata/explain's
// *.txt and *.envoy.yaml, from the commands' output.
var update = flag.Bool("update", false, "rewrite the golden files under testdata from the commands' output")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	// goldenCase is a translate golden case; its rendering is
	// proxyconfig/testdata/<goldenCase>.txt.
	goldenCase = "profile-retries-timeouts"
	node       = "webapp-0.booksapp"
	waitFor    = 10 * time.Second
)

// loadTranslateGolden reads translate's golden resources of a case, which
// are protojson-as-YAML lists.
func loadTranslateGolden(t testing.TB, name string) (perNode map[string][]types.Resource, clas map[string]*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	perNode = map[string][]types.Resource{}
	clas = map[string]*endpointv3.ClusterLoadAssignment{}
	for kind, typeURL := range map[string]string{
		"listeners": resourcev3.ListenerType,
		"routes":    resourcev3.RouteType,
		"clusters":  resourcev3.ClusterType,
		"endpoints": resourcev3.EndpointType,
	} {
		path := filepath.Join("../../translate/testdata", name+"."+kind+".yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(js, &items); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
		if err != nil {
			t.Fatal(err)
		}
		for i, item := range items {
			m := mt.New().Interface()
			if err := protojson.Unmarshal(item, m); err != nil {
				t.Fatalf("%s[%d]: %v", path, i, err)
			}
			if cla, ok := m.(*endpointv3.ClusterLoadAssignment); ok {
				clas[cla.GetClusterName()] = cla
				continue
			}
			perNode[typeURL] = append(perNode[typeURL], m)
		}
	}
	return perNode, clas
}

// controlPlane is a real xds.Server fed with a golden case, serving ADS on
// loopback and its debug handlers over HTTP as the controller mounts them.
type controlPlane struct {
	xds     *xds.Server
	adsAddr string
	url     string
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	s, err := xds.New(xds.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	perNode, clas := loadTranslateGolden(t, goldenCase)
	ctx := context.Background()
	if err := s.SetNodeResources(ctx, node, proxy.Envoy, perNode, time.Time{}); err != nil {
		t.Fatalf("SetNodeResources: %v", err)
	}
	if err := s.SetEndpoints(ctx, clas, time.Time{}); err != nil {
		t.Fatalf("SetEndpoints: %v", err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	mux := http.NewServeMux()
	dbg := s.DebugHandler()
	mux.Handle("/debug/proxies", dbg)
	mux.Handle("/debug/proxies/", dbg)
	mux.Handle("/debug/config/", dbg)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &controlPlane{xds: s, adsAddr: lis.Addr().String(), url: hs.URL}
}

var fixedNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// run executes weft with args and an environment, returning stdout and the
// error (cobra prints it on stderr, which is returned too).
func run(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand(func(k string) string { return env[k] }, func() time.Time { return fixedNow })
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestProxyConfigText(t *testing.T) {
	cp := startControlPlane(t)
	golden, err := os.ReadFile(filepath.Join("proxyconfig", "testdata", goldenCase+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	v := cp.xds.NodeVersions(node)
	doc := fetchDoc(t, cp)
	want := "PROXY " + node + "\n" +
		"VERSIONS lds " + v[resourcev3.ListenerType][:8] + "  rds " + v[resourcev3.RouteType][:8] +
		"  cds " + v[resourcev3.ClusterType][:8] + "  eds " + doc.Versions[resourcev3.EndpointType][:8] +
		"  sds " + v[resourcev3.SecretType][:8] + "\n\n" + string(golden)

	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"node id", nil, []string{"proxy-config", node, "--cp", cp.url}},
		{"pod and -n", nil, []string{"proxy-config", "webapp-0", "-n", "booksapp", "--cp", cp.url}},
		{"node id and -n", nil, []string{"pc", node, "--namespace=booksapp", "--cp", cp.url}},
		{"address from the environment", map[string]string{cpEnv: cp.url}, []string{"proxy-config", node}},
		{"host:port", nil, []string{"proxy-config", node, "--cp", strings.TrimPrefix(cp.url, "http://")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := run(t, tt.env, tt.args...)
			if err != nil {
				t.Fatalf("weft %v: %v\n%s", tt.args, err, stderr)
			}
			if out != want {
				t.Errorf("weft %v printed:\n%s\nwant (the proxyconfig golden behind a header):\n%s", tt.args, out, want)
			}
		})
	}
}

func fetchDoc(t *testing.T, cp *controlPlane) *xds.NodeConfigDocument {
	t.Helper()
	out, stderr, err := run(t, nil, "proxy-config", node, "-o", "json", "--cp", cp.url)
	if err != nil {
		t.Fatalf("-o json: %v\n%s", err, stderr)
	}
	var doc xds.NodeConfigDocument
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("-o json is not a NodeConfigDocument: %v\n%s", err, out)
	}
	return &doc
}

func TestProxyConfigJSON(t *testing.T) {
	cp := startControlPlane(t)
	doc := fetchDoc(t, cp)
	if doc.Node != node {
		t.Errorf("node = %q", doc.Node)
	}
	res, err := doc.DecodeResources()
	if err != nil {
		t.Fatal(err)
	}
	served, _ := cp.xds.NodeConfig(node)
	for _, typeURL := range xds.ConfigTypes {
		if len(res[typeURL]) != len(served[typeURL]) {
			t.Errorf("%s: %d resources in the JSON, %d served", typeURL, len(res[typeURL]), len(served[typeURL]))
		}
	}
}

func TestProxyConfigSections(t *testing.T) {
	cp := startControlPlane(t)
	out, stderr, err := run(t, nil, "proxy-config", node, "--cp", cp.url, "--section", "route,endpoints", "--domains", "-1")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"ROUTES (2)", "ENDPOINTS (2 clusters)", "books:7002, books.booksapp"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, dontWant := range []string{"LISTENERS", "CLUSTERS", "SECRETS"} {
		if strings.Contains(out, dontWant) {
			t.Errorf("output has %q:\n%s", dontWant, out)
		}
	}
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestErrors(t *testing.T) {
	cp := startControlPlane(t)
	dead := closedAddr(t)

	// A server that is not a (new enough) Weft control plane.
	old := httptest.NewServer(http.NewServeMux())
	t.Cleanup(old.Close)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "something broke", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"node": "x", "resources": {"type.googleapis.com/envoy.config.cluster.v3.Cluster": [{"name": 7}]}}`)
	}))
	t.Cleanup(garbage.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown pod", []string{"proxy-config", "web-9.booksapp", "--cp", cp.url},
			[]string{"proxy web-9.booksapp: no configuration for node web-9.booksapp: the control plane has accepted no resources for it"}},
		{"unknown pod in the default namespace", []string{"proxy-config", "web-9", "--cp", cp.url},
			[]string{"no configuration for node web-9.default"}},
		{"unreachable", []string{"proxy-config", node, "--cp", dead},
			[]string{"cannot reach the control plane at http://" + dead, "--cp or $WEFT_CP", "connection refused"}},
		{"unreachable, proxies", []string{"proxies", "--cp", "http://" + dead},
			[]string{"cannot reach the control plane at http://" + dead, "--cp"}},
		{"no debug config endpoint", []string{"proxy-config", node, "--cp", old.URL},
			[]string{"does not serve /debug/config/ (HTTP 404: 404 page not found)", "--cp"}},
		{"no debug proxies endpoint", []string{"proxies", "--cp", old.URL},
			[]string{"listing proxies: the server at " + old.URL + " does not serve /debug/proxies"}},
		{"server error", []string{"proxies", "--cp", broken.URL},
			[]string{"Internal Server Error: something broke"}},
		{"undecodable config", []string{"proxy-config", node, "--cp", garbage.URL},
			[]string{"proxy webapp-0.booksapp: node x: decoding cds[0]"}},
		{"timeout", []string{"proxies", "--cp", slow.URL, "--timeout", "50ms"},
			[]string{"did not answer in time (--timeout)"}},
		{"bad output", []string{"proxy-config", node, "-o", "yaml", "--cp", cp.url}, []string{`-o "yaml": want text or json`}},
		{"bad section", []string{"proxy-config", node, "--section", "pods", "--cp", cp.url}, []string{`--section: unknown section "pods"`}},
		{"zero domains", []string{"proxy-config", node, "--domains", "0", "--cp", cp.url}, []string{"--domains 0"}},
		{"empty cp", []string{"proxies", "--cp", ""}, []string{"--cp is empty"}},
		{"bad scheme", []string{"proxies", "--cp", "ftp://x"}, []string{`scheme "ftp" is not http or https`}},
		{"bad pod", []string{"proxy-config", "web.", "--cp", cp.url}, []string{`pod "web.": want <pod>.<namespace>`}},
		{"no pod", []string{"proxy-config", "--cp", cp.url}, []string{"accepts 1 arg(s), received 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := run(t, nil, tt.args...)
			if err == nil {
				t.Fatalf("weft %v succeeded:\n%s", tt.args, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(stderr, err.Error()) {
				t.Errorf("stderr %q does not show the error", stderr)
			}
			if out != "" {
				t.Errorf("stdout on error: %q", out)
			}
		})
	}
}

// connectProxy plays Envoy on one ADS stream: it ACKs CDS and NACKs LDS.
func connectProxy(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		conn.Close()
	})
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := &corev3.Node{Id: node, UserAgentName: "envoy"}
	exchange := func(typeURL string, nack *rpcstatus.Status) {
		t.Helper()
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: n, TypeUrl: typeURL}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		reply := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce(), VersionInfo: resp.GetVersionInfo(), ErrorDetail: nack}
		if nack != nil {
			reply.VersionInfo = ""
		}
		if err := stream.Send(reply); err != nil {
			t.Fatal(err)
		}
	}
	exchange(resourcev3.ClusterType, nil)
	exchange(resourcev3.ListenerType, &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "Error adding/updating listener(s) outbound: \n  unknown field"})
}

func TestProxies(t *testing.T) {
	cp := startControlPlane(t)

	out, stderr, err := run(t, nil, "proxies", "--cp", cp.url)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if out != "No proxies connected to this control plane replica.\n" {
		t.Errorf("no proxies: %q", out)
	}

	connectProxy(t, cp.adsAddr)
	deadline := time.Now().Add(waitFor)
	for {
		p, ok := cp.xds.Proxy(node)
		if ok && p.Types["cds"].VersionAcked != "" && p.Types["lds"].LastNack != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy's ACK and NACK were not recorded: %+v", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p, _ := cp.xds.Proxy(node)

	out, stderr, err = run(t, nil, "proxies", "--cp", cp.url)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one proxy:\n%s", out)
	}
	header := strings.Fields(lines[0])
	wantHeader := []string{"NAME", "NAMESPACE", "KIND", "CONNECTED-SINCE", "LDS", "SENT/ACKED", "RDS", "SENT/ACKED", "CDS", "SENT/ACKED", "EDS", "SENT/ACKED", "SDS", "SENT/ACKED", "LAST-NACK"}
	if strings.Join(header, " ") != strings.Join(wantHeader, " ") {
		t.Errorf("header = %v, want %v", header, wantHeader)
	}
	cds := p.Types["cds"].VersionAcked[:8]
	ldsSent := p.Types["lds"].VersionSent[:8]
	row := lines[1]
	for _, want := range []string{
		"webapp-0  ", "booksapp  ", "envoy  ",
		p.ConnectedSince.UTC().Format(time.RFC3339) + " (",
		// CDS sent and ACKed: one version. LDS sent, nothing ACKed.
		"  " + cds + "  ", "  " + ldsSent + "/-  ",
		// The newest NACK, whitespace folded.
		"lds ", " ago: Error adding/updating listener(s) outbound: unknown field",
	} {
		if !strings.Contains(row, want) {
			t.Errorf("row lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(row, "  -  "); n != 3 {
		t.Errorf("want rds, eds and sds shown as - (not subscribed), found %d:\n%s", n, out)
	}

	out, _, err = run(t, nil, "proxies", "--cp", cp.url, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list []xds.ProxyStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Node != node {
		t.Errorf("-o json: %v %+v\n%s", err, list, out)
	}
}

func TestRenderProxiesAges(t *testing.T) {
	at := fixedNow.Add(-90 * time.Second)
	proxies := []xds.ProxyStatus{
		{Node: "b-0.ns", Pod: "b-0", Namespace: "ns", Kind: "grpc", ConnectedSince: fixedNow.Add(-2 * time.Hour), Types: map[string]xds.TypeStatus{
			"lds": {TypeURL: resourcev3.ListenerType, VersionSent: "aaaaaaaaaaaa", VersionAcked: "aaaaaaaaaaaa"},
			"cds": {TypeURL: resourcev3.ClusterType, VersionSent: "cccccccccccc", VersionAcked: "bbbbbbbbbbbb", LastNack: &xds.NackStatus{At: at.Add(-time.Hour), Message: "older"}},
			"eds": {TypeURL: resourcev3.EndpointType, VersionSent: "3", VersionAcked: "3", LastNack: &xds.NackStatus{At: at, Message: strings.Repeat("x", 150)}},
		}},
		{Node: "a-0.ns", Pod: "a-0", Namespace: "ns", Kind: "envoy", ConnectedSince: fixedNow.Add(-3 * time.Minute)},
	}
	var out bytes.Buffer
	renderProxies(&out, proxies, fixedNow)
	lines := strings.Split(out.String(), "\n")
	if !strings.HasPrefix(lines[1], "a-0 ") || !strings.HasPrefix(lines[2], "b-0 ") {
		t.Errorf("not sorted by namespace and pod:\n%s", out.String())
	}
	for _, want := range []string{"(3m)", "(120m)", "aaaaaaaa  ", "cccccccc/bbbbbbbb", "  3  ", "eds 90s ago: " + strings.Repeat("x", 100) + "..."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "older") {
		t.Errorf("an older NACK is shown:\n%s", out.String())
	}
}

func TestNodeID(t *testing.T) {
	tests := []struct {
		arg, ns string
		nsSet   bool
		want    string
		wantErr bool
	}{
		{"web-0.demo", "default", false, "web-0.demo", false},
		{"web-0", "default", false, "web-0.default", false},
		{"web-0", "demo", true, "web-0.demo", false},
		{"web-0.demo", "demo", true, "web-0.demo", false},
		{"web.v2", "demo", true, "web.v2.demo", false},
		{"", "demo", false, "", true},
		{".demo", "default", false, "", true},
		{"web.", "default", false, "", true},
	}
	for _, tt := range tests {
		got, err := nodeID(tt.arg, tt.ns, tt.nsSet)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("nodeID(%q, %q, %v) = %q, %v; want %q, error %v", tt.arg, tt.ns, tt.nsSet, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "weft dev") || !strings.HasSuffix(out, runtime.Version()+"\n") {
		t.Errorf("version = %q", out)
	}
	if got := versionString("v1.2.3"); !strings.HasPrefix(got, "weft v1.2.3") {
		t.Errorf("versionString = %q", got)
	}
}

// TestHelpSaysHowToReachTheControlPlane: the help names the ways to point weft
// at a control plane that exist (the --cp flag, $WEFT_CP, the default address
// of a local cp) and no Kubernetes object that nothing creates.
func TestHelpSaysHowToReachTheControlPlane(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		notWant []string
	}{
		{
			name:    "default",
			want:    []string{"--cp", "$WEFT_CP", "cp --admin-addr", defaultCP, "make demo prints the address", `env WEFT_CP (default "` + defaultCP + `")`},
			notWant: []string{"port-forward", "deploy/", "weft-system"},
		},
		{
			name: "WEFT_CP set",
			env:  map[string]string{cpEnv: "http://10.0.0.7:9990"},
			want: []string{`(default "http://10.0.0.7:9990")`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := run(t, tt.env, "--help")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("help lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("help mentions %q, which nothing creates:\n%s", w, out)
				}
			}
		})
	}
}

func TestMissingCPFlagValue(t *testing.T) {
	_, _, err := run(t, nil, "proxies", "--cp")
	if err == nil || !strings.Contains(err.Error(), "flag needs an argument") {
		t.Errorf("--cp without a value: %v", err)
	}
}

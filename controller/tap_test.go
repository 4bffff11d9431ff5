package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/injector/bootstrap"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/tap"
	"github.com/weftmesh/weft/translate"
	"github.com/weftmesh/weft/xds/adsclient"
)

// accessLogNames lists the log names of the access loggers on every HTTP
// connection manager of the view's listeners.
func accessLogNames(t *testing.T, v adsclient.View) []string {
	t.Helper()
	var out []string
	for _, r := range v.Resources[resourcev3.ListenerType] {
		err := translate.EachHTTPConnectionManager(r.(*listenerv3.Listener), func(h *hcmv3.HttpConnectionManager) bool {
			for _, al := range h.GetAccessLog() {
				out = append(out, al.GetName())
			}
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// openTapSession starts a session on the admin API's /api/tap?query, which
// lasts until ctx ends, and returns its lines one at a time.
func openTapSession(ctx context.Context, t *testing.T, rc *runningController, query string) (next func() tap.Line) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/api/tap?%s", rc.AdminAddr(), query), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/tap: %s", resp.Status)
	}
	lines := bufio.NewScanner(resp.Body)
	return func() tap.Line {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("tap stream ended: %v", lines.Err())
		}
		var l tap.Line
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("tap line %q: %v", lines.Text(), err)
		}
		return l
	}
}

const tapApp = `
apiVersion: v1
kind: Namespace
metadata:
  name: itap
  annotations: {weft.io/inject: enabled}
---
apiVersion: v1
kind: Namespace
metadata: {name: itap-plain}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: itap}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: example.invalid/web:1, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: itap}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - {name: api, image: example.invalid/api:1, ports: [{name: http, containerPort: 9090}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: itap-plain}
spec:
  replicas: 1
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      containers:
      - {name: plain, image: example.invalid/plain:1, ports: [{name: http, containerPort: 8080}]}
`

// TestIntegrationTapSession: a session through the admin API taps exactly
// the named deployment's proxy (observed over ADS), a stand-in Envoy's
// access log reaches the session as the lines `weft tap` prints, and
// ending the session removes the logger.
func TestIntegrationTapSession(t *testing.T) {
	requireEnv(t)
	ensureCRDs(t)
	ctx := t.Context()
	rc := startController(t, func(c *Config) {
		c.TapLogService = func() (*corev3.GrpcService, error) {
			return &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: bootstrap.XDSClusterName}}}, nil
		}
	})
	if _, err := env.Apply(ctx, []byte(tapApp)); err != nil {
		t.Fatal(err)
	}
	web := runningPods(t, "itap", "app=web", 1)[0]
	api := runningPods(t, "itap", "app=api", 1)[0]
	runningPods(t, "itap-plain", "app=plain", 1)
	webNode, apiNode := web.Name+".itap", api.Name+".itap"

	clients := map[string]*adsclient.Client{}
	for _, node := range []string{webNode, apiNode} {
		c, err := adsclient.Dial(ctx, rc.XDSAddr().String(), node)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := waitADS(ctx, c, time.Minute, node+" synced", func(v adsclient.View) bool { return v.Synced }); err != nil {
			t.Fatal(err)
		}
		clients[node] = c
	}
	apiBefore := clients[apiNode].View().Versions[resourcev3.ListenerType]

	// Targets that cannot be tapped answer with a reason.
	bad := []struct {
		query, want string
		code        int
	}{
		{"namespace=itap-plain&target=deploy/plain", "not meshed", http.StatusUnprocessableEntity},
		{"namespace=itap&target=deploy/nothing", "no pods", http.StatusNotFound},
		{"namespace=itap&target=web", "want KIND/NAME", http.StatusBadRequest},
		{"namespace=itap&target=deploy/web&max=soon", "positive duration", http.StatusBadRequest},
	}
	for _, b := range bad {
		code, body, err := rc.adminGet("/api/tap?" + b.query)
		if err != nil || code != b.code || !strings.Contains(body, b.want) {
			t.Errorf("/api/tap?%s: %d %v %q, want %d and %q", b.query, code, err, body, b.code, b.want)
		}
	}

	sessCtx, endSession := context.WithCancel(ctx)
	defer endSession()
	next := openTapSession(sessCtx, t, rc, "namespace=itap&target=deploy/web&path=/users")
	if l := next(); !slices.Equal(l.Proxies, []string{webNode}) {
		t.Fatalf("session taps %v, want [%s]", l.Proxies, webNode)
	}
	want := []string{wellknown.HTTPGRPCAccessLog}
	if _, err := waitADS(ctx, clients[webNode], time.Minute, "the tap logger on web", func(v adsclient.View) bool {
		names := accessLogNames(t, v)
		return len(names) > 0 && !slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(want, n) })
	}); err != nil {
		t.Fatal(err)
	}

	// A stand-in for Envoy 1.40's http_grpc access logger on web's inbound
	// side: the identifier in the first message, then the entries
	// (api/envoy/service/accesslog/v3/als.proto,
	// api/envoy/data/accesslog/v3/accesslog.proto).
	conn, err := grpc.NewClient(rc.XDSAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	als, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
	}
	logged := func(path string) *accesslogdatav3.HTTPAccessLogEntry {
		return &accesslogdatav3.HTTPAccessLogEntry{
			CommonProperties: &accesslogdatav3.AccessLogCommon{
				DownstreamRemoteAddress:     addr(api.Status.PodIP, 51000),
				DownstreamLocalAddress:      addr(web.Status.PodIP, 8080),
				TimeToFirstDownstreamTxByte: durationpb.New(3 * time.Millisecond),
				TimeToLastDownstreamTxByte:  durationpb.New(4 * time.Millisecond),
			},
			Request:  &accesslogdatav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Authority: "web.itap.svc.cluster.local:8080", Path: path},
			Response: &accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200), ResponseBodyBytes: 42},
		}
	}
	err = als.Send(&accesslogv3.StreamAccessLogsMessage{
		Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: webNode}, LogName: translate.TapLogInbound},
		LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{logged("/healthz"), logged("/users/7")},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := next()
	if l.Event == nil {
		t.Fatalf("line %+v is no event", l)
	}
	head := fmt.Sprintf("id=%s proxy=in src=%s:51000 dst=%s:8080 tls=false", l.Event.ID, api.Status.PodIP, web.Status.PodIP)
	wantLines := []string{
		"req " + head + " :method=GET :authority=web.itap.svc.cluster.local:8080 :path=/users/7",
		"rsp " + head + " :status=200 latency=3000µs",
		"end " + head + " duration=1000µs response-length=42B",
	}
	if got := l.Event.Lines(); !slices.Equal(got, wantLines) {
		t.Errorf("tap lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}

	// The session ends with its client: the logger goes.
	endSession()
	if _, err := waitADS(ctx, clients[webNode], time.Minute, "the tap logger gone from web", func(v adsclient.View) bool {
		return len(accessLogNames(t, v)) == 0
	}); err != nil {
		t.Fatal(err)
	}
	_, _ = als.CloseAndRecv()
	if got := clients[apiNode].View().Versions[resourcev3.ListenerType]; got != apiBefore {
		t.Errorf("api's listeners moved (%s -> %s) though only web was tapped", apiBefore, got)
	}
	if names := accessLogNames(t, clients[apiNode].View()); len(names) > 0 {
		t.Errorf("api has access loggers %v", names)
	}
}

// TestTapNodes: which sidecars a target names, and why one cannot be
// tapped.
func TestTapNodes(t *testing.T) {
	s := NewStore("cluster.local", nil)
	s.SetNamespace(testNamespace("shop", meshedNS))
	s.SetNamespace(testNamespace("plain", nil))
	owned := func(p *corev1.Pod, kind, owner, hash string) *corev1.Pod {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: owner}}
		if hash != "" {
			p.Labels = map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: hash}
		}
		return p
	}
	s.SetPod(owned(testPod("shop", "web-5d9f-a", "10.1.0.1", "web", nil, 8080), "ReplicaSet", "web-5d9f", "5d9f"))
	s.SetPod(owned(testPod("shop", "web-5d9f-b", "10.1.0.2", "web", nil, 8080), "ReplicaSet", "web-5d9f", "5d9f"))
	// A ReplicaSet of another deployment whose name starts like web's.
	s.SetPod(owned(testPod("shop", "web-admin-77aa-c", "10.1.0.3", "web", nil, 8080), "ReplicaSet", "web-admin-77aa", "77aa"))
	s.SetPod(owned(testPod("shop", "db-0", "10.1.0.4", "db", nil, 5432), "StatefulSet", "db", ""))
	s.SetPod(owned(testPod("shop", "grpc-1", "10.1.0.5", "grpc", map[string]string{mesh.AnnotationProxyKind: mesh.ProxyKindValueGRPC}, 50051), "ReplicaSet", "grpc-1a", "1a"))
	s.SetPod(owned(testPod("plain", "plain-1a-x", "10.1.1.1", "plain", nil, 8080), "ReplicaSet", "plain-1a", "1a"))
	c := &Controller{store: s}
	tests := []struct {
		ns, target string
		want       []string
		code       int
		msg        string
	}{
		{"shop", "deploy/web", []string{"web-5d9f-a.shop", "web-5d9f-b.shop"}, 0, ""},
		{"shop", "deployment/web-admin", []string{"web-admin-77aa-c.shop"}, 0, ""},
		{"shop", "sts/db", []string{"db-0.shop"}, 0, ""},
		{"shop", "pod/web-5d9f-b", []string{"web-5d9f-b.shop"}, 0, ""},
		{"shop", "deploy/grpc", nil, http.StatusUnprocessableEntity, "proxyless gRPC, which has no access log to tap: grpc-1"},
		{"plain", "deploy/plain", nil, http.StatusUnprocessableEntity, "Deployment plain/plain cannot be tapped: not meshed (no Weft proxy): plain-1a-x"},
		{"shop", "pod/nope", nil, http.StatusNotFound, "Pod shop/nope: no pods"},
		{"shop", "svc/web", nil, http.StatusBadRequest, `target "svc/web": want KIND/NAME`},
		{"shop", "deploy/", nil, http.StatusBadRequest, "want KIND/NAME"},
	}
	for _, tc := range tests {
		t.Run(tc.ns+"/"+tc.target, func(t *testing.T) {
			got, err := c.tapNodes(tc.ns, tc.target)
			if tc.code == 0 {
				if err != nil || !slices.Equal(got, tc.want) {
					t.Errorf("tapNodes = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			var te *tap.TargetError
			if !errors.As(err, &te) || te.Code != tc.code || !strings.Contains(te.Msg, tc.msg) {
				t.Errorf("tapNodes error %v, want %d %q", err, tc.code, tc.msg)
			}
		})
	}
}

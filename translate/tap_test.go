package translate_test

import (
	"path/filepath"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/translate"
)

// withoutAccessLogs returns copies of ls with every HCM's access_log
// cleared, and how many loggers were removed.
func withoutAccessLogs(t *testing.T, ls []*listenerv3.Listener) ([]*listenerv3.Listener, int) {
	t.Helper()
	var out []*listenerv3.Listener
	n := 0
	for _, l := range ls {
		c := proto.Clone(l).(*listenerv3.Listener)
		err := translate.EachHTTPConnectionManager(c, func(h *hcmv3.HttpConnectionManager) bool {
			n += len(h.AccessLog)
			h.AccessLog = nil
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out, n
}

// TestTapChangesOnlyTheTappedProxy: tapping one proxy adds loggers to its
// connection managers and nothing else; every other proxy's output is what
// it was without the tap (clusters and routes the very same objects).
func TestTapChangesOnlyTheTappedProxy(t *testing.T) {
	c := loadGoldenCase(t, filepath.Join(testdataDir, "tapped-proxy.in.yaml"))
	m, _ := mesh.Build("cluster.local", c.objects)
	var tappedPx, otherPx *mesh.Proxy
	for _, pod := range c.objects.Pods {
		p, _ := mesh.ProxyFromPod(pod, nil)
		if pod == c.proxy {
			tappedPx = p
		} else {
			otherPx = p
		}
	}
	tapped := *m
	tapped.Tapped = map[string]bool{tappedPx.NodeID(): true}

	tests := []struct {
		name        string
		opts        translate.Options
		proxy       *mesh.Proxy
		wantLoggers int
	}{
		{"tapped proxy", translate.Options{TapLogService: currentTapLogService}, tappedPx, 2},
		{"untapped proxy", translate.Options{TapLogService: currentTapLogService}, otherPx, 0},
		{"no access log service configured", translate.Options{}, tappedPx, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := translate.NewTranslator(tc.opts)
			before, _ := tr.ForProxy(m, tc.proxy)
			after, _ := tr.ForProxy(&tapped, tc.proxy)
			plain, n := withoutAccessLogs(t, after.Listeners)
			if n != tc.wantLoggers {
				t.Errorf("%d access loggers, want %d", n, tc.wantLoggers)
			}
			if len(plain) != len(before.Listeners) {
				t.Fatalf("%d listeners tapped, %d untapped", len(plain), len(before.Listeners))
			}
			for i := range plain {
				if !proto.Equal(plain[i], before.Listeners[i]) {
					t.Errorf("listener %s differs beyond its access logs", plain[i].GetName())
				}
			}
			for i := range before.Clusters {
				if after.Clusters[i] != before.Clusters[i] {
					t.Errorf("cluster %s changed", before.Clusters[i].GetName())
				}
			}
			for i := range before.Routes {
				if after.Routes[i] != before.Routes[i] {
					t.Errorf("route %s changed", before.Routes[i].GetName())
				}
			}
		})
	}
}

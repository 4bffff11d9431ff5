package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/weftmesh/weft/telemetry"
)

func TestStatCommands(t *testing.T) {
	ok := 0.975
	var mu sync.Mutex
	var asked url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/stat" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		asked = r.URL.Query()
		mu.Unlock()
		tab := telemetry.Table{Resource: r.URL.Query().Get("resource"), Skipped: []string{"traffic to svc/x.shop cannot be split by pod"}}
		switch tab.Resource {
		case telemetry.ResourceRoute:
			tab.Rows = []telemetry.Row{{Name: telemetry.DefaultRoute, Dst: "api", SuccessRate: &ok, RPS: 2}}
		default:
			tab.Rows = []telemetry.Row{{Namespace: "shop", Name: "api", Meshed: "2/2", SuccessRate: &ok, RPS: 20}}
		}
		_ = json.NewEncoder(w).Encode(tab)
	}))
	defer srv.Close()
	cases := []struct {
		name      string
		args      []string
		wantQuery url.Values
		wantOut   string
		wantErr   string
	}{
		{"stat deploy", []string{"stat", "deploy", "-n", "shop"},
			url.Values{"resource": {"deployment"}, "namespace": {"shop"}, "window": {"1m0s"}}, "api    2/2      97.50%    20.0rps", ""},
		{"stat one pod -A --to", []string{"stat", "po/api-0", "-A", "--to", "svc/api"},
			url.Values{"resource": {"pod"}, "name": {"api-0"}, "namespace": {"default"}, "all": {"true"}, "to": {"svc/api"}, "window": {"1m0s"}}, "shop        api", ""},
		{"routes svc", []string{"routes", "svc/api", "-n", "shop"},
			url.Values{"resource": {"route"}, "name": {"api"}, "namespace": {"shop"}, "window": {"1m0s"}}, "[DEFAULT]   api       97.50%", ""},
		{"routes deploy --to", []string{"routes", "deploy/web", "--to", "svc/api"},
			url.Values{"resource": {"route"}, "name": {"api"}, "from": {"deploy/web"}, "namespace": {"default"}, "window": {"1m0s"}}, "[DEFAULT]", ""},
		{"edges deploy", []string{"edges", "deploy"},
			url.Values{"resource": {"edge"}, "namespace": {"default"}, "window": {"1m0s"}}, "SRC", ""},
		{"stat json", []string{"stat", "deploy", "-o", "json"}, nil, `"success": 0.975`, ""},
		{"bad resource", []string{"stat", "cronjobs"}, nil, "", `unknown resource "cronjobs"`},
		{"bad from", []string{"stat", "deploy", "--from", "web"}, nil, "", `query.from: "web": want KIND/NAME`},
		{"bad output", []string{"stat", "deploy", "-o", "yaml"}, nil, "", `-o "yaml": want table, wide or json`},
		{"routes of a deployment", []string{"routes", "deploy/web"}, nil, "", "routes belong to services"},
		{"edges of pods", []string{"edges", "po"}, nil, "", "only deploy is supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			asked = nil
			mu.Unlock()
			out, errOut, err := run(t, nil, append([]string{"--cp", srv.URL}, c.args...)...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v (stderr %s)", err, errOut)
			}
			if !strings.Contains(out, c.wantOut) {
				t.Errorf("stdout\n%s\nwant it to contain %q", out, c.wantOut)
			}
			if !strings.Contains(errOut, "skipped: traffic to svc/x.shop cannot be split by pod") {
				t.Errorf("stderr %q does not name the skipped row", errOut)
			}
			mu.Lock()
			defer mu.Unlock()
			if c.wantQuery != nil && asked.Encode() != c.wantQuery.Encode() {
				t.Errorf("asked %s, want %s", asked.Encode(), c.wantQuery.Encode())
			}
		})
	}
}

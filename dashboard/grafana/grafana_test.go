package grafana

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promparser "github.com/prometheus/prometheus/promql/parser"

	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/envoystats/envoystatstest"
	"github.com/weftmesh/weft/telemetry/promsource"
	"github.com/weftmesh/weft/telemetry/promsource/promsourcetest"
)

var update = flag.Bool("update", false, "rewrite deploy/dashboards from the generator")

const dir = "../../deploy/dashboards"

// TestDashboardFiles: the JSON in deploy/dashboards is what the generator writes
// (go test ./dashboard/grafana -update rewrites it), and nothing else is there.
func TestDashboardFiles(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	on, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range on {
		name := filepath.Base(path)
		want, ok := files[name]
		if !ok {
			t.Errorf("%s is not generated (stale?)", path)
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator's; run go test ./dashboard/grafana -update", path)
		}
	}
	if len(on) != len(files) {
		t.Errorf("%d files in %s, the generator writes %d", len(on), dir, len(files))
	}
}

// series is a metric name and the labels it can carry.
type series map[string]map[string]bool

func (s series) add(name string, lbls ...string) {
	if s[name] == nil {
		s[name] = map[string]bool{}
	}
	for _, l := range lbls {
		s[name][l] = true
	}
}

// envoySeries are the Prometheus series a Weft proxy exposes, as telemetry/envoystats
// derives them from what Envoy 1.40 creates for translate's output and the bootstrap's
// stats rules (a mesh in use, with mTLS, profile routes, gRPC and HTTP services), plus
// the scrape job's target labels.
func envoySeries(t *testing.T) series {
	t.Helper()
	target := []string{promsource.LabelNamespace, promsource.LabelPod, promsource.LabelDeployment, "job", "instance"}
	out := series{}
	for _, s := range (envoystatstest.Shape{Services: 4, Routes: 1, MTLS: true}).Series(t, envoystatstest.InUse) {
		lbls := slices.Clone(target)
		for _, tag := range s.Tags {
			lbls = append(lbls, tag.Name)
		}
		out.add(s.Name, lbls...)
	}
	out.add("up", target...)
	return out
}

// cpSeries are the control plane's metrics as its code registers them: every
// prometheus.*Opts literal's Name, with the label names of the *Vec it builds.
func cpSeries(t *testing.T) series {
	t.Helper()
	out := series{}
	for _, file := range []string{"../../xds/metrics.go", "../../controller/metrics.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
				return true
			}
			opts, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			var name string
			for _, e := range opts.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "Name" {
					if lit, ok := kv.Value.(*ast.BasicLit); ok {
						name, _ = strconv.Unquote(lit.Value)
					}
				}
			}
			if name == "" {
				return true
			}
			var lbls []string
			if len(call.Args) > 1 {
				if l, ok := call.Args[1].(*ast.CompositeLit); ok {
					for _, e := range l.Elts {
						if lit, ok := e.(*ast.BasicLit); ok {
							s, _ := strconv.Unquote(lit.Value)
							lbls = append(lbls, s)
						}
					}
				}
			}
			lbls = append(lbls, "job", "instance")
			if strings.Contains(sel.Sel.Name, "Histogram") {
				out.add(name+"_bucket", append(lbls, "le")...)
				out.add(name+"_sum", lbls...)
				out.add(name+"_count", lbls...)
			} else {
				out.add(name, lbls...)
			}
			return true
		})
	}
	if len(out) < 10 {
		t.Fatalf("found only %d control plane metrics in xds and controller: the scan is broken", len(out))
	}
	return out
}

// boardJSON is what the tests read of a generated dashboard: its panels' queries and its
// query variables.
type boardJSON struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr   string `json:"expr"`
			Legend string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// grafanaVars replaces Grafana's variables with values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", "shop", "$deployment", "web", "$vhost", "api.shop.svc.cluster.local:80", "${datasource}", "prom")

// TestDashboardQueriesLint parses every panel's and variable's PromQL with Prometheus'
// parser and checks that each metric it selects and each label it matches or groups by
// is one a Weft proxy (through the bootstrap's stats rules and the scrape job) or the
// control plane actually exposes.
func TestDashboardQueriesLint(t *testing.T) {
	known := envoySeries(t)
	for name, lbls := range cpSeries(t) {
		known[name] = lbls
	}
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	labelValues := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`)
	for file, b := range files {
		var d boardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		type query struct{ where, expr, groupLabel string }
		var queries []query
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for i, tg := range p.Targets {
				queries = append(queries, query{where: file + ": panel " + strconv.Quote(p.Title) + " target " + strconv.Itoa(i), expr: tg.Expr})
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			s, _ := v.Query.(string)
			m := labelValues.FindStringSubmatch(s)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", file, v.Name, s)
				continue
			}
			queries = append(queries, query{where: file + ": variable " + v.Name, expr: m[1], groupLabel: m[2]})
		}
		for _, q := range queries {
			// A stock Prometheus: no experimental functions or syntax.
			expr, err := promparser.NewParser(promparser.Options{}).ParseExpr(grafanaVars.Replace(q.expr))
			if err != nil {
				t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
				continue
			}
			for _, problem := range lint(expr, known, q.groupLabel) {
				t.Errorf("%s: %s", q.where, problem)
			}
		}
	}
}

// lint names the metrics and labels expr uses that known does not have.
func lint(expr promparser.Expr, known series, extraLabel string) []string {
	var problems []string
	var selected []string
	promparser.Inspect(expr, func(n promparser.Node, _ []promparser.Node) error {
		vs, ok := n.(*promparser.VectorSelector)
		if !ok {
			return nil
		}
		lbls, ok := known[vs.Name]
		if !ok {
			problems = append(problems, "metric "+vs.Name+" is exposed by neither the proxies nor the control plane")
			return nil
		}
		selected = append(selected, vs.Name)
		for _, m := range vs.LabelMatchers {
			if m.Name != labels.MetricName && !lbls[m.Name] {
				problems = append(problems, "metric "+vs.Name+" has no label "+m.Name)
			}
		}
		if extraLabel != "" && !lbls[extraLabel] {
			problems = append(problems, "metric "+vs.Name+" has no label "+extraLabel)
		}
		return nil
	})
	has := func(label string) bool {
		return slices.ContainsFunc(selected, func(name string) bool { return known[name][label] })
	}
	// label_replace(v, dst, replacement, src, regex) makes dst from src: src must be a
	// selected metric's, and dst may then be grouped by.
	made := map[string]bool{}
	promparser.Inspect(expr, func(n promparser.Node, _ []promparser.Node) error {
		call, ok := n.(*promparser.Call)
		if !ok || call.Func.Name != "label_replace" || len(call.Args) != 5 {
			return nil
		}
		dst, _ := call.Args[1].(*promparser.StringLiteral)
		src, _ := call.Args[3].(*promparser.StringLiteral)
		if dst == nil || src == nil {
			return nil
		}
		if !has(src.Val) {
			problems = append(problems, "label_replace reads "+src.Val+", which none of the selected metrics has")
		}
		made[dst.Val] = true
		return nil
	})
	promparser.Inspect(expr, func(n promparser.Node, _ []promparser.Node) error {
		agg, ok := n.(*promparser.AggregateExpr)
		if !ok {
			return nil
		}
		for _, g := range agg.Grouping {
			if !made[g] && !has(g) {
				problems = append(problems, "grouping by "+g+", which none of the selected metrics has")
			}
		}
		return nil
	})
	return problems
}

// TestSuccessPanelMatchesTables: the namespace dashboard's success rate, evaluated by
// Prometheus' engine over what it scraped from stand-in proxies, is the SUCCESS column
// `weft stat deploy --prometheus` (and so the web dashboard) prints for the same
// traffic: HTTP 5xx (ShopTraffic) and gRPC calls failed inside 200 responses
// (GRPCTraffic) alike.
func TestSuccessPanelMatchesTables(t *testing.T) {
	d := generatedBoard(t, "weft-namespace.json")
	var expr string
	for _, p := range d.Panels {
		if p.Title == "Success rate" {
			expr = p.Targets[0].Expr
		}
	}
	if expr == "" {
		t.Fatal("weft-namespace.json has no Success rate panel")
	}
	for _, tc := range []struct {
		namespace string
		traffic   []*promsourcetest.ProxyTarget
	}{
		{"shop", promsourcetest.ShopTraffic()},
		{"apps", promsourcetest.GRPCTraffic()},
	} {
		t.Run(tc.namespace, func(t *testing.T) {
			q, end := promsourcetest.QueryOf(t, tc.traffic)
			src := promsource.NewWithQuery(q, "cluster.local", func() time.Time { return end })
			tab, err := src.Query(context.Background(), telemetry.Query{Resource: telemetry.ResourceDeployment, Namespace: tc.namespace})
			if err != nil {
				t.Fatal(err)
			}
			vars := strings.NewReplacer("$__rate_interval", promsourceWindow, "$namespace", tc.namespace)
			vec, err := q(context.Background(), vars.Replace(expr), end)
			if err != nil {
				t.Fatal(err)
			}
			panel := byLabel(vec, "deployment")
			if len(tab.Rows) == 0 || len(panel) != len(tab.Rows) {
				t.Fatalf("panel %v, table %d rows", panel, len(tab.Rows))
			}
			for _, r := range tab.Rows {
				got, ok := panel[r.Name]
				if !ok || r.SuccessRate == nil || math.Abs(got-*r.SuccessRate) > 1e-9 {
					t.Errorf("%s: panel %v (present %v), table %v", r.Name, got, ok, telemetry.FormatSuccess(r.SuccessRate))
				}
			}
		})
	}
}

// TestRoutePanelsMatchTables: the route dashboard's effective and actual requests per
// second and success rates, evaluated by Prometheus' engine over what it scraped from
// stand-in proxies whose routes retried (promsourcetest.ShopTraffic) or whose service had
// failed gRPC calls (GRPCTraffic: no route's success is known), are the columns
// `weft routes svc/NAME -o wide --prometheus` prints for the same traffic.
func TestRoutePanelsMatchTables(t *testing.T) {
	d := generatedBoard(t, "weft-route.json")
	for _, tc := range []struct {
		namespace, service, vhost string
		traffic                   []*promsourcetest.ProxyTarget
	}{
		{"shop", "api", "api.shop.svc.cluster.local:80", promsourcetest.ShopTraffic()},
		{"apps", "billing", "billing.apps.svc.cluster.local:9090", promsourcetest.GRPCTraffic()},
	} {
		q, end := promsourcetest.QueryOf(t, tc.traffic)
		src := promsource.NewWithQuery(q, "cluster.local", func() time.Time { return end })
		tab, err := src.Query(context.Background(), telemetry.Query{Resource: telemetry.ResourceRoute, Namespace: tc.namespace, Name: tc.service})
		if err != nil {
			t.Fatal(err)
		}
		vars := strings.NewReplacer("$__rate_interval", promsourceWindow, "$vhost", tc.vhost)
		for _, c := range []struct {
			panel, legend string
			column        func(telemetry.Row) *float64
		}{
			{"Requests per second: effective (as the client saw them) and actual (every attempt)", "effective", func(r telemetry.Row) *float64 { return &r.EffectiveRPS }},
			{"Requests per second: effective (as the client saw them) and actual (every attempt)", "actual", func(r telemetry.Row) *float64 { return &r.ActualRPS }},
			{"Success rate: effective and actual", "effective", func(r telemetry.Row) *float64 { return r.EffectiveSuccess }},
			{"Success rate: effective and actual", "actual", func(r telemetry.Row) *float64 { return r.ActualSuccess }},
		} {
			t.Run(tc.service+" "+c.panel+" "+c.legend, func(t *testing.T) {
				var expr string
				for _, p := range d.Panels {
					for _, tg := range p.Targets {
						if p.Title == c.panel && tg.Legend == "{{weft_route}} "+c.legend {
							expr = tg.Expr
						}
					}
				}
				if expr == "" {
					t.Fatalf("weft-route.json has no %s target in %q", c.legend, c.panel)
				}
				vec, err := q(context.Background(), vars.Replace(expr), end)
				if err != nil {
					t.Fatal(err)
				}
				panel := byLabel(vec, "weft_route")
				routes, known := 0, 0
				for _, r := range tab.Rows {
					if r.Name == telemetry.DefaultRoute {
						continue // no route stats: the board shows profile routes only
					}
					routes++
					got, ok := panel[r.Name]
					p := c.column(r)
					if p == nil {
						if ok {
							t.Errorf("%s: panel %v, table unknown", r.Name, got)
						}
						continue
					}
					known++
					if !ok || !(math.Abs(got-*p) <= 1e-9) {
						t.Errorf("%s: panel %v (present %v), table %v", r.Name, got, ok, *p)
					}
				}
				if routes == 0 || len(panel) != known {
					t.Errorf("panel %v, table %d routes, %d known", panel, routes, known)
				}
			})
		}
	}
}

// generatedBoard is the dashboard the generator writes to file name.
func generatedBoard(t *testing.T, name string) boardJSON {
	t.Helper()
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	var d boardJSON
	if err := json.Unmarshal(files[name], &d); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// byLabel is a panel's values by one label, as its legend shows them.
func byLabel(vec model.Vector, label model.LabelName) map[string]float64 {
	out := map[string]float64{}
	for _, s := range vec {
		out[string(s.Metric[label])] = float64(s.Value)
	}
	return out
}

// promsourceWindow is the window of a table promsource answers by default, as PromQL.
var promsourceWindow = model.Duration(telemetry.DefaultWindow).String()

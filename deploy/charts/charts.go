// Package charts holds Weft's Helm chart (weft/), embedded so `weft install`
// renders and applies exactly what `helm install deploy/charts/weft` does,
// through Helm's Go SDK, for users without helm.
package charts

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/yaml"
)

//go:embed all:weft
var files embed.FS

const (
	// Namespace is where the control plane runs: cp's --identity-namespace
	// default, and what weft check looks in.
	Namespace = "weft-system"
	// Release is the Helm release of the control plane.
	Release = "weft"
	// CRDsRelease is the Helm release of `weft install --crds`: a release of
	// its own, so the CRDs outlive the control plane's.
	CRDsRelease = "weft-crds"
	// HAValuesFile is the chart's values file for a highly available
	// control plane.
	HAValuesFile = "values-ha.yaml"
	// RenderKubeVersion is the cluster version an offline render assumes:
	// the Kubernetes release Weft is built and tested against (k8s.io/*
	// v0.36 in go.mod), not Helm's built-in default, which is older than
	// the chart's kubeVersion allows.
	RenderKubeVersion = "v1.36.3"
)

// Load returns the embedded chart.
func Load() (*chart.Chart, error) {
	var bufs []*loader.BufferedFile
	err := fs.WalkDir(files, "weft", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		bufs = append(bufs, &loader.BufferedFile{Name: p[len("weft/"):], Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the embedded chart: %w", err)
	}
	c, err := loader.LoadFiles(bufs)
	if err != nil {
		return nil, fmt.Errorf("loading the embedded chart: %w", err)
	}
	return c, nil
}

// ValuesFile returns one of the chart's values files (HAValuesFile).
func ValuesFile(name string) (map[string]any, error) {
	data, err := files.ReadFile(path.Join("weft", name))
	if err != nil {
		return nil, fmt.Errorf("chart values file %s: %w", name, err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("chart values file %s: %w", name, err)
	}
	return v, nil
}

// Options say what to install.
type Options struct {
	// Namespace of the release and the control plane; default Namespace.
	Namespace string
	// CRDsOnly installs the CRDs alone, as release CRDsRelease.
	CRDsOnly bool
	// Values override the chart's (already merged from files and --set).
	Values map[string]any
	// Wait for every object to be ready, at most Timeout.
	Wait    bool
	Timeout time.Duration
	// Logger receives Helm's debug lines; nil discards them.
	Logger *slog.Logger
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return Namespace
	}
	return o.Namespace
}

// ReleaseName is the Helm release these options install or remove.
func (o Options) ReleaseName() string {
	if o.CRDsOnly {
		return CRDsRelease
	}
	return Release
}

func (o Options) values() map[string]any {
	v := chartutil.CoalesceTables(map[string]any{}, o.Values)
	if o.CRDsOnly {
		v["crdsOnly"] = true
	}
	return v
}

func (o Options) debugLog() action.DebugLog {
	return func(format string, v ...any) {
		if o.Logger != nil {
			o.Logger.Debug(fmt.Sprintf(format, v...), "component", "helm")
		}
	}
}

// Render renders the chart offline (helm template): nothing is read from a
// cluster, so certificates the chart generates are new on every render.
func Render(ctx context.Context, o Options) (string, error) {
	c, err := Load()
	if err != nil {
		return "", err
	}
	return renderChart(ctx, c, o)
}

func renderChart(ctx context.Context, c *chart.Chart, o Options) (string, error) {
	cfg := &action.Configuration{Log: o.debugLog()}
	in := action.NewInstall(cfg)
	in.DryRun, in.ClientOnly, in.Replace, in.IncludeCRDs = true, true, true, true
	in.ReleaseName, in.Namespace = o.ReleaseName(), o.namespace()
	kv, err := chartutil.ParseKubeVersion(RenderKubeVersion)
	if err != nil {
		return "", fmt.Errorf("rendering chart %s: %w", c.Name(), err)
	}
	in.KubeVersion = kv
	rel, err := in.RunWithContext(ctx, c, o.values())
	if err != nil {
		return "", fmt.Errorf("rendering chart %s: %w", c.Name(), err)
	}
	return rel.Manifest, nil
}

func configuration(getter genericclioptions.RESTClientGetter, o Options) (*action.Configuration, error) {
	cfg := new(action.Configuration)
	if err := cfg.Init(getter, o.namespace(), "secret", o.debugLog()); err != nil {
		return nil, fmt.Errorf("connecting Helm to the cluster: %w", err)
	}
	return cfg, nil
}

// Install installs the release, or upgrades it to the chart and values
// given when it exists (values not given are the chart's defaults, not the
// previous release's).
func Install(ctx context.Context, getter genericclioptions.RESTClientGetter, o Options) (*release.Release, error) {
	c, err := Load()
	if err != nil {
		return nil, err
	}
	// Bad values are reported as such, before the cluster is asked anything.
	if _, err := renderChart(ctx, c, o); err != nil {
		return nil, err
	}
	cfg, err := configuration(getter, o)
	if err != nil {
		return nil, err
	}
	name := o.ReleaseName()
	_, err = cfg.Releases.Last(name)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.CreateNamespace = name, o.namespace(), true
		in.Wait, in.Timeout = o.Wait, o.timeout()
		rel, err := in.RunWithContext(ctx, c, o.values())
		if err != nil {
			return nil, fmt.Errorf("installing release %s in %s: %w", name, o.namespace(), err)
		}
		return rel, nil
	case err != nil:
		return nil, fmt.Errorf("reading release %s in %s: %w", name, o.namespace(), err)
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Wait, up.Timeout = o.namespace(), o.Wait, o.timeout()
	rel, err := up.RunWithContext(ctx, name, c, o.values())
	if err != nil {
		return nil, fmt.Errorf("upgrading release %s in %s: %w", name, o.namespace(), err)
	}
	return rel, nil
}

func (o Options) timeout() time.Duration {
	if o.Timeout == 0 {
		return 5 * time.Minute
	}
	return o.Timeout
}

// Uninstall removes the release and every object it made, except the CRDs
// (resource-policy keep: deleting a CRD deletes every ServiceProfile).
// A release that is not installed is not an error: found says so.
func Uninstall(getter genericclioptions.RESTClientGetter, o Options) (found bool, err error) {
	cfg, err := configuration(getter, o)
	if err != nil {
		return false, err
	}
	un := action.NewUninstall(cfg)
	un.Wait, un.Timeout = o.Wait, o.timeout()
	if _, err := un.Run(o.ReleaseName()); err != nil {
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("uninstalling release %s in %s: %w", o.ReleaseName(), o.namespace(), err)
	}
	return true, nil
}

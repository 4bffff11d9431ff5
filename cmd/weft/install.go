package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/weftmesh/weft/deploy/charts"
)

// installFlags are the flags install and uninstall share: where the
// cluster is (kubectl's flags) and which release.
type installFlags struct {
	kube      *genericclioptions.ConfigFlags
	namespace string
	crds      bool
	wait      time.Duration
	verbose   bool
}

func (f *installFlags) add(cmd *cobra.Command, waitFor string) {
	f.kube = genericclioptions.NewConfigFlags(false)
	fs := cmd.Flags()
	fs.StringVar(f.kube.KubeConfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(f.kube.Context, "context", "", "kubeconfig context")
	fs.StringVarP(&f.namespace, "namespace", "n", charts.Namespace, "namespace of the control plane and its Helm release")
	fs.BoolVar(&f.crds, "crds", false, "the CRDs only, as their own release ("+charts.CRDsRelease+")")
	fs.DurationVar(&f.wait, "wait", 0, "wait up to this long for every object to be "+waitFor+" (0: do not wait)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "print Helm's progress")
}

func (f *installFlags) options(cmd *cobra.Command) charts.Options {
	f.kube.Namespace = &f.namespace
	o := charts.Options{Namespace: f.namespace, CRDsOnly: f.crds, Wait: f.wait > 0, Timeout: f.wait}
	if f.verbose {
		o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return o
}

func newInstallCommand() *cobra.Command {
	var (
		f      installFlags
		vals   values.Options
		ha     bool
		dryRun bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade Weft in the cluster with its Helm chart",
		Long: `install renders Weft's Helm chart (deploy/charts/weft, built into this binary)
with Helm's Go SDK and installs it as the Helm release "` + charts.Release + `" in
namespace ` + charts.Namespace + `, or upgrades that release: helm list, helm get and helm
uninstall work on it too. Values are the chart's (values.yaml), then --ha
(values-ha.yaml), then -f files, then --set.

--crds installs only the CRDs (ServiceProfile linkerd.io/v1alpha2 and
TrafficSplit split.smi-spec.io), each only if the cluster has none of that name
(so Linkerd's are left alone), as the release "` + charts.CRDsRelease + `".
--dry-run (or -o yaml) prints the manifest instead, rendered offline.

  weft install
  weft install --ha --set identity.mtls=true
  weft install -o yaml > weft.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "yaml" {
				return fmt.Errorf("-o %q: want yaml", output)
			}
			o := f.options(cmd)
			v := map[string]any{}
			if ha {
				haVals, err := charts.ValuesFile(charts.HAValuesFile)
				if err != nil {
					return err
				}
				v = haVals
			}
			user, err := vals.MergeValues(getter.Providers{})
			if err != nil {
				return fmt.Errorf("reading values: %w", err)
			}
			o.Values = chartutil.CoalesceTables(user, v)
			if dryRun || output != "" {
				manifest, err := charts.Render(cmd.Context(), o)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), manifest)
				return err
			}
			rel, err := charts.Install(cmd.Context(), f.kube, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "release %s in %s: revision %d, %s\n\n%s\n", rel.Name, rel.Namespace, rel.Version, rel.Info.Status, strings.TrimSpace(rel.Info.Notes))
			return nil
		},
	}
	f.add(cmd, "ready")
	fs := cmd.Flags()
	fs.BoolVar(&ha, "ha", false, "a highly available control plane (the chart's "+charts.HAValuesFile+")")
	fs.StringSliceVarP(&vals.ValueFiles, "values", "f", nil, "values files (as helm -f)")
	fs.StringArrayVar(&vals.Values, "set", nil, "values on the command line, key=value (as helm --set)")
	fs.BoolVar(&dryRun, "dry-run", false, "print the manifest, install nothing")
	fs.StringVarP(&output, "output", "o", "", "yaml: print the manifest, install nothing")
	return cmd
}

func newUninstallCommand() *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what weft install installed (helm uninstall of its release)",
		Long: `uninstall removes the Helm release "` + charts.Release + `" (with --crds,
"` + charts.CRDsRelease + `") and every object it made. The CRDs stay, whichever release
installed them: deleting a CRD deletes every ServiceProfile or TrafficSplit in the cluster
(kubectl delete crd serviceprofiles.linkerd.io trafficsplits.split.smi-spec.io does that on
purpose). The namespace stays too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := f.options(cmd)
			found, err := charts.Uninstall(f.kube, o)
			if err != nil {
				return err
			}
			if !found {
				fmt.Fprintf(cmd.OutOrStdout(), "nothing to remove: no release %s in %s\n", o.ReleaseName(), f.namespace)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed the release from %s; the CRDs are kept\n", f.namespace)
			return nil
		},
	}
	f.add(cmd, "deleted")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apiextensionsclientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftmesh/weft/healthcheck"
)

// Exit statuses of weft check (docs/check.md).
const (
	exitCheckFailed = 1
	exitUsage       = 2
)

// exitError carries an exit status other than 1 to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

type checkOptions struct {
	pre, proxy  bool
	output      string
	wait        time.Duration
	namespace   string
	kubeconfig  string
	kubeContext string
}

func newCheckCommand(g *globals) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that Weft is installed and working, or can be installed (--pre)",
		Long: `check runs the checks of a Weft installation, grouped in categories, one line
each: √ passed, ‼ warning, × failed, with the error and a link to a hint under
every problem. It reads Kubernetes (--kubeconfig, --context) and the control
plane's admin address (--cp).

--pre checks what an installation needs instead; --proxy adds the data
plane: every meshed pod's proxy connected, on the current configuration,
with no NACK and a fresh certificate. --wait reruns until everything passes
or the duration is up.

Exit status: 0 every check passed (warnings allowed), 1 a check failed,
2 usage error. See docs/check.md for every check and its hint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), g, o)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	f := cmd.Flags()
	f.BoolVar(&o.pre, "pre", false, "check that Weft can be installed (API, version, permissions, no earlier install)")
	f.BoolVar(&o.proxy, "proxy", false, "also check the data plane proxies")
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.DurationVar(&o.wait, "wait", 0, "rerun the checks until they pass or this long has passed (0: run once)")
	f.StringVarP(&o.namespace, "namespace", "n", healthcheck.DefaultNamespace, "namespace of the control plane")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.kubeContext, "context", "", "kubeconfig context (default its current context)")
	return cmd
}

func runCheck(ctx context.Context, stdout, stderr io.Writer, g *globals, o checkOptions) error {
	if err := outputFormat(o.output); err != nil {
		return usageError(err)
	}
	if o.wait < 0 {
		return usageError(fmt.Errorf("--wait %s: must not be negative", o.wait))
	}
	if o.pre && o.proxy {
		return usageError(errors.New("--pre and --proxy exclude each other: --pre is for before the installation"))
	}
	cfg, err := kubeClients(o)
	if err != nil {
		return err
	}
	cfg.Namespace, cfg.Pre, cfg.Proxy, cfg.Now = o.namespace, o.pre, o.proxy, g.now
	if !o.pre {
		c, err := newCPClient(g.cp)
		if err != nil {
			return usageError(err)
		}
		cfg.Admin = &adminClient{c: c, timeout: g.timeout}
	}
	var rep healthcheck.Report
	if o.wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, o.wait)
		defer cancel()
		start := time.Now()
		rep = healthcheck.Wait(wctx, cfg, 0, func(r healthcheck.Report) {
			left := (o.wait - time.Since(start)).Round(time.Second)
			fmt.Fprintf(stderr, "waiting for checks to pass (%s left): %s\n", max(left, 0), healthcheck.Summary(r))
		})
	} else {
		rep = healthcheck.Run(ctx, cfg)
	}
	if o.output == "json" {
		err = healthcheck.WriteJSON(stdout, rep)
	} else {
		err = healthcheck.WriteText(stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.Success {
		return &exitError{code: exitCheckFailed, err: fmt.Errorf("%d checks failed", rep.Failing())}
	}
	return nil
}

func kubeClients(o checkOptions) (healthcheck.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.kubeContext}).ClientConfig()
	if err != nil {
		return healthcheck.Config{}, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	rc.UserAgent = "weft-check"
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return healthcheck.Config{}, fmt.Errorf("making a Kubernetes client: %w", err)
	}
	ext, err := apiextensionsclientset.NewForConfig(rc)
	if err != nil {
		return healthcheck.Config{}, fmt.Errorf("making a Kubernetes client: %w", err)
	}
	return healthcheck.Config{Kube: kube, APIExtensions: ext}, nil
}

// adminClient is the control plane's admin address for healthcheck, each
// request within --timeout.
type adminClient struct {
	c       *cpClient
	timeout time.Duration
}

func (a *adminClient) Get(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return a.c.get(ctx, path)
}

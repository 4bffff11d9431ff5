// Package healthcheck is `weft check`: the checks of an installation, grouped
// in categories the way `linkerd check` shows them (√ passed, ‼ warning,
// × failed, a hint under each problem), and their JSON form.
//
// It reads Kubernetes through the clients it is given and the control
// plane through its admin endpoints (Admin); it knows nothing of flags or
// terminals. docs/check.md lists every check and its hint anchor.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	apiextensionsclientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/injector"
	"github.com/weftmesh/weft/profiles/admission"
)

// Names the chart (deploy/charts/weft) gives what it installs; the checks
// look for exactly these.
const (
	DefaultNamespace       = "weft-system"
	ControlPlaneName       = "weft-cp"
	ControlPlaneSelector   = "app.kubernetes.io/name=weft,app.kubernetes.io/component=control-plane"
	InjectorWebhookName    = "weft-proxy-injector"
	ValidatorWebhookName   = "weft-profile-validator"
	WebhookServingSecret   = "weft-webhook-tls"
	IssuerSecretName       = "weft-identity-issuer"
	TrustBundleName        = "weft-trust-bundle"
	ServiceProfileCRD      = "serviceprofiles.linkerd.io"
	ServiceProfileVersion  = "v1alpha2"
	TrafficSplitCRD        = "trafficsplits.split.smi-spec.io"
	TrafficSplitVersion    = "v1alpha2"
	DefaultHintBase        = "https://github.com/weftmesh/weft/blob/main/docs/check.md"
	DefaultRetryInterval   = 2 * time.Second
	AnchorMinValidity      = 60 * 24 * time.Hour
	IssuerMinValidity      = 7 * 24 * time.Hour
	WebhookCertMinValidity = 30 * 24 * time.Hour
)

// The paths the chart's webhook configurations call: the ones cp's webhook
// server serves them on.
const (
	InjectorWebhookPath  = injector.InjectPath
	ValidatorWebhookPath = admission.Path
)

// Status is the outcome of one check, with Linkerd's JSON words.
type Status string

const (
	StatusSuccess Status = "success"
	StatusWarning Status = "warning"
	StatusError   Status = "error"
)

// Symbol is how the text output marks a status.
func (s Status) Symbol() string {
	switch s {
	case StatusSuccess:
		return "√"
	case StatusWarning:
		return "‼"
	default:
		return "×"
	}
}

// Result is one check's line. Error and Hint are set unless it passed.
type Result struct {
	Description string `json:"description"`
	Result      Status `json:"result"`
	Error       string `json:"error,omitempty"`
	Hint        string `json:"hint,omitempty"`
}

// CategoryResult is a category's lines in order.
type CategoryResult struct {
	Name   string   `json:"categoryName"`
	Checks []Result `json:"checks"`
}

// Report is a whole run: Success is false when any check failed (warnings
// do not fail a run), which is `weft check`'s exit status 1.
type Report struct {
	Success    bool             `json:"success"`
	Categories []CategoryResult `json:"categories"`
}

// Failing counts the checks that failed.
func (r Report) Failing() int {
	n := 0
	for _, c := range r.Categories {
		for _, ch := range c.Checks {
			if ch.Result == StatusError {
				n++
			}
		}
	}
	return n
}

// Admin reads a control plane's admin endpoint (cp --admin-addr): the body
// of a 200 answer to GET path.
type Admin interface {
	Get(ctx context.Context, path string) ([]byte, error)
}

// Config is what a run checks and with what.
type Config struct {
	Kube          kubernetes.Interface
	APIExtensions apiextensionsclientset.Interface
	// Admin is the control plane's admin endpoint; nil leaves out the
	// checks that need it (and --proxy needs it).
	Admin Admin
	// Namespace of the control plane. Default DefaultNamespace.
	Namespace string
	// Pre runs the pre-installation checks instead of the installation's.
	Pre bool
	// Proxy adds the data plane checks (they need Admin).
	Proxy bool
	// Now is the clock certificates are judged by. Default time.Now.
	Now func() time.Time
	// HintBase is the page hints point into. Default DefaultHintBase.
	HintBase string
	// CheckTimeout bounds each check. Default 10s.
	CheckTimeout time.Duration
	// DialWebhook connects to where the API server would send a review (a
	// URL's host:port, or a ready endpoint of the webhook's Service). Default
	// a net.Dialer, from where weft runs; a caller with another way into the
	// cluster network (a tunnel, a test standing in for the pod network)
	// routes it there.
	DialWebhook func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HintBase == "" {
		c.HintBase = DefaultHintBase
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = 10 * time.Second
	}
	if c.DialWebhook == nil {
		c.DialWebhook = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	return c
}

// check is one line. A fatal check's failure ends the run there: nothing
// after it can be told (the API is unreachable, the namespace missing).
type check struct {
	description string
	anchor      string
	fatal       bool
	run         func(ctx context.Context, r *run) error
}

type category struct {
	name   string
	checks []check
}

// warning marks an error that makes its check ‼ rather than ×.
type warning struct{ error }

func warnf(format string, args ...any) error { return warning{fmt.Errorf(format, args...)} }

// run is one pass: the config and what checks share (a webhook dialled once
// serves both its reachability and its certificate line).
type run struct {
	cfg   Config
	cache map[string]any
}

// memo computes a value once per run.
func memo[T any](r *run, key string, f func() (T, error)) (T, error) {
	type entry struct {
		v   T
		err error
	}
	if e, ok := r.cache[key].(entry); ok {
		return e.v, e.err
	}
	v, err := f()
	r.cache[key] = entry{v, err}
	return v, err
}

func (r *run) categories() []category {
	cats := []category{kubernetesAPI(), kubernetesVersion()}
	if r.cfg.Pre {
		return append(cats, preKubernetesSetup())
	}
	cats = append(cats, weftCRDs(), weftExistence(r.cfg.Admin != nil), weftWebhooks(), weftIdentity(r.cfg.Admin != nil))
	if r.cfg.Proxy && r.cfg.Admin != nil {
		cats = append(cats, weftDataPlane())
	}
	return cats
}

// Run runs every check that applies once and reports them all.
func Run(ctx context.Context, cfg Config) Report {
	r := &run{cfg: cfg.withDefaults(), cache: map[string]any{}}
	rep := Report{Success: true}
	for _, cat := range r.categories() {
		cr := CategoryResult{Name: cat.name}
		stop := false
		for _, ch := range cat.checks {
			res := r.one(ctx, ch)
			cr.Checks = append(cr.Checks, res)
			if res.Result == StatusError {
				rep.Success = false
				stop = ch.fatal
			}
			if stop {
				break
			}
		}
		rep.Categories = append(rep.Categories, cr)
		if stop {
			break
		}
	}
	return rep
}

func (r *run) one(ctx context.Context, ch check) Result {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CheckTimeout)
	defer cancel()
	err := ch.run(ctx, r)
	res := Result{Description: ch.description, Result: StatusSuccess}
	if err == nil {
		return res
	}
	res.Result, res.Error = StatusError, err.Error()
	var w warning
	if errors.As(err, &w) {
		res.Result = StatusWarning
	}
	res.Hint = r.cfg.HintBase + "#" + ch.anchor
	return res
}

// Wait runs the checks until they all pass or ctx ends, every interval
// (DefaultRetryInterval when 0), telling progress about each failing run. It
// returns the last report. A run that has started is finished (each check
// is bounded by CheckTimeout) so that the last report says what is wrong
// rather than that the deadline came.
func Wait(ctx context.Context, cfg Config, interval time.Duration, progress func(Report)) Report {
	if interval <= 0 {
		interval = DefaultRetryInterval
	}
	for {
		rep := Run(context.WithoutCancel(ctx), cfg)
		if rep.Success {
			return rep
		}
		if progress != nil {
			progress(rep)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return rep
		case <-t.C:
		}
	}
}

// Package injector puts Weft's data plane into pods: an Envoy sidecar (a
// native sidecar: an init container that keeps running), its bootstrap, the
// projected ServiceAccount token it proves itself with, and the init
// container that redirects the pod's traffic through it. The same Inject
// serves the admission webhook (Handler) and `weft inject --manual`.
package injector

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// DefaultProxyImage is the Envoy release whose API matches the
// go-control-plane envoy module in go.mod (v1.40.0): the control plane
// emits exactly the fields that release knows. Bump the two together.
const DefaultProxyImage = "envoyproxy/envoy:v1.40.0"

// DefaultCaptureImage holds cmd/capture. Weft publishes no images yet:
// a real install builds it and sets Config.CaptureImage (cp --capture-image).
const DefaultCaptureImage = "ghcr.io/weftmesh/capture:dev"

// Names of what the injector adds to a pod; Uninject removes exactly these.
const (
	ProxyContainerName   = "weft-proxy"
	CaptureContainerName = "weft-init"
	TokenVolumeName      = "weft-token"
	// TokenDir holds the projected token; TokenPath is what the bootstrap
	// hands Envoy's file-based call credentials, which re-read it per stream.
	TokenDir  = "/var/run/secrets/weft.io/serviceaccount"
	TokenPath = TokenDir + "/token"
	// Env vars the downward API fills; Kubernetes expands $(VAR) in args.
	envPodName      = "WEFT_POD_NAME"
	envPodNamespace = "WEFT_POD_NAMESPACE"
)

// Config is what every injected pod shares; annotations override parts of it
// per pod (mesh.SidecarSettingsFromPod).
type Config struct {
	// ProxyImage is the Envoy image, repository and tag.
	ProxyImage string
	// CaptureImage runs /capture (cmd/capture) as the first init container.
	CaptureImage string
	// ControlPlaneAddress is the xDS server as pods reach it, host:port.
	ControlPlaneAddress string
	// ServerName is the xDS server's TLS name; empty means plaintext xDS
	// (cp without --identity).
	ServerName string
	// TrustBundlePEM verifies the xDS server; inlined into every bootstrap,
	// as Linkerd inlines its trust anchors.
	TrustBundlePEM []byte
	// TrustBundleSource, when set, is asked for the bundle at every
	// injection instead (the control plane's CA, which follows the bundle
	// ConfigMap), so a rotated anchor reaches the next pods at once.
	TrustBundleSource func() []byte
	// TokenAudience and TokenExpirySeconds shape the projected token. Kubelet
	// rotates it at 80 % of its life; Envoy re-reads it on every stream.
	TokenAudience      string
	TokenExpirySeconds int64
	// Resources of the proxy container before annotations.
	Resources corev1.ResourceRequirements
	// LogLevel is Envoy's --log-level before annotations.
	LogLevel string
	// DrainSeconds is how long Envoy drains listeners on shutdown, and how
	// long the preStop hook waits first so endpoint removal reaches clients
	// while the proxy still serves.
	DrainSeconds int64
	// Version is Weft's release, recorded in weft.io/created-by.
	Version string
}

// DefaultConfig is a Config with every default filled in; the control plane
// address is Weft's in-cluster Service.
func DefaultConfig() Config {
	return Config{
		ProxyImage:          DefaultProxyImage,
		CaptureImage:        DefaultCaptureImage,
		ControlPlaneAddress: "weft-cp.weft-system.svc:8086",
		TokenAudience:       "weft",
		TokenExpirySeconds:  24 * 60 * 60,
		// Linkerd's defaults in spirit: a small request, a memory limit so a
		// leaking proxy is restarted rather than starving the node, no CPU
		// limit (throttling a proxy slows every request of the pod).
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("256Mi"),
			},
		},
		LogLevel:     "warning",
		DrainSeconds: 5,
		Version:      "dev",
	}
}

func (c Config) validate() error {
	switch {
	case c.ProxyImage == "":
		return fmt.Errorf("injector config: no proxy image")
	case c.CaptureImage == "":
		return fmt.Errorf("injector config: no capture image")
	case c.ControlPlaneAddress == "":
		return fmt.Errorf("injector config: no control plane address")
	case c.TokenAudience == "":
		return fmt.Errorf("injector config: no token audience")
	case c.TokenExpirySeconds < 600:
		// The apiserver's minimum for a projected token.
		return fmt.Errorf("injector config: token expiry %ds is under the 600s the apiserver accepts", c.TokenExpirySeconds)
	case c.DrainSeconds < 0:
		return fmt.Errorf("injector config: negative drain time")
	}
	return nil
}

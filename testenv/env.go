// Package testenv runs a real, local Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok (a fake node whose pods
// become Running with IPs), each a child process on loopback, built by `make bins`.
//
// One environment per test package, started from TestMain:
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m, testenv.Options{}, &env)) }
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	apiextensionsclientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Defaults for Options. The pod CIDR must not overlap the service CIDR: kwok's own default
// (10.0.0.0/24) does.
const (
	DefaultPodCIDR              = "10.244.0.0/16"
	DefaultServiceCIDR          = "10.0.0.0/24"
	DefaultNodeName             = "kwok-node-0"
	DefaultServiceAccountIssuer = "https://kubernetes.default.svc"
	DefaultStartTimeout         = 2 * time.Minute
)

// Options configure an environment. The zero value is a working configuration.
type Options struct {
	// BinDir holds the component binaries. Default: DefaultBinDir().
	BinDir string
	// PodCIDR is where kwok takes pod IPs from (kwok --cidr). Tests that serve real traffic
	// on pod IPs set it to the subnet of a network namespace they made (see testenv/netns).
	PodCIDR string
	// ServiceCIDR is the apiserver's --service-cluster-ip-range.
	ServiceCIDR string
	// NodeName names the single fake node.
	NodeName string
	// ServiceAccountIssuer is the iss claim of ServiceAccount tokens.
	ServiceAccountIssuer string
	// APIServerFlags are appended to kube-apiserver's command line (later flags win), for
	// tests that need a feature gate or an admission plugin switched.
	APIServerFlags []string
	// StartTimeout bounds Start as a whole. Default: DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives progress messages. Default: slog.Default().
	Logger *slog.Logger
}

// Env is a running environment. Its exported fields are read-only.
type Env struct {
	// Dir is the environment's private temporary directory; Stop removes it.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig file (system:masters).
	Kubeconfig string
	// Config is the admin client configuration. Copy it (rest.CopyConfig) before changing it.
	Config *rest.Config
	// Clientset, Dynamic and APIExtensions are admin clients sharing one connection pool.
	Clientset     kubernetes.Interface
	Dynamic       dynamic.Interface
	APIExtensions apiextensionsclientset.Interface
	// CACertPEM is the CA that signed the apiserver's serving certificate.
	CACertPEM []byte
	// ServiceAccountIssuer is the iss claim of tokens the apiserver issues.
	ServiceAccountIssuer string
	// ServiceAccountPublicKeyFile verifies ServiceAccount tokens offline (PEM, PKIX RSA).
	ServiceAccountPublicKeyFile string
	// PodCIDR, ServiceCIDR and NodeName are the values in effect, defaults applied.
	PodCIDR     string
	ServiceCIDR string
	NodeName    string

	log        *slog.Logger
	binDir     string
	httpClient *http.Client
	mapper     *restmapper.DeferredDiscoveryRESTMapper
	procs      []*process // in start order
	logDir     string
	stopOnce   sync.Once
	stopErr    error
	keptLogs   string
}

// Start runs a fresh environment and returns once it is usable: the apiserver is ready, the
// fake node is Ready, and the default ServiceAccount exists. On error nothing is left
// running; the components' logs are kept and the error says where.
func Start(ctx context.Context, opts Options) (*Env, error) {
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	var pinned map[string]string
	if root, err := repoRoot(); err == nil {
		if pinned, err = pinnedVersions(filepath.Join(root, "testenv", "tools", "go.mod")); err != nil {
			return nil, err
		}
	}
	if err := checkBinaries(ctx, opts.BinDir, pinned); err != nil {
		return nil, err
	}

	removeStaleDirs(opts.Logger)
	dir, err := os.MkdirTemp("", dirPattern)
	if err != nil {
		return nil, fmt.Errorf("creating testenv directory: %w", err)
	}
	// Stamped with our pid, so that a later Start can tell the directory of a killed
	// process (SIGKILL leaves no chance to clean up) from one in use.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("creating testenv directory: %w", err)
	}
	e := &Env{
		Dir:                  dir,
		ServiceAccountIssuer: opts.ServiceAccountIssuer,
		PodCIDR:              opts.PodCIDR,
		ServiceCIDR:          opts.ServiceCIDR,
		NodeName:             opts.NodeName,
		log:                  opts.Logger,
		binDir:               opts.BinDir,
		logDir:               filepath.Join(dir, "logs"),
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := e.start(ctx, opts); err != nil {
		kept, stopErr := e.StopKeepLogs()
		if kept != "" {
			err = fmt.Errorf("%w\n(component logs kept in %s)", err, kept)
		}
		return nil, errors.Join(err, stopErr)
	}
	return e, nil
}

const (
	dirPattern = "weft-testenv-"
	ownerFile  = "owner.pid"
)

// removeStaleDirs deletes environment directories whose owning process no longer exists.
// Their components died with the owner (Pdeathsig); only the files stayed behind.
func removeStaleDirs(log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPattern+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue // not ours, or being created right now
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := os.RemoveAll(d); err == nil {
			log.Info("removed the directory of a testenv whose process was killed", "dir", d, "pid", pid)
		}
	}
}

func withDefaults(o Options) (Options, error) {
	if o.BinDir == "" {
		dir, err := DefaultBinDir()
		if err != nil {
			return o, fmt.Errorf("locating bin/ (set Options.BinDir or WEFT_BIN_DIR): %w", err)
		}
		o.BinDir = dir
	}
	if o.PodCIDR == "" {
		o.PodCIDR = DefaultPodCIDR
	}
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = DefaultServiceCIDR
	}
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName
	}
	if o.ServiceAccountIssuer == "" {
		o.ServiceAccountIssuer = DefaultServiceAccountIssuer
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	pods, err := netip.ParsePrefix(o.PodCIDR)
	if err != nil {
		return o, fmt.Errorf("testenv options: PodCIDR: %w", err)
	}
	services, err := netip.ParsePrefix(o.ServiceCIDR)
	if err != nil {
		return o, fmt.Errorf("testenv options: ServiceCIDR: %w", err)
	}
	if pods.Overlaps(services) {
		return o, fmt.Errorf("testenv options: PodCIDR %s overlaps ServiceCIDR %s", pods, services)
	}
	return o, nil
}

func (e *Env) start(ctx context.Context, opts Options) error {
	pkiDir := filepath.Join(e.Dir, "pki")
	for _, d := range []string{e.logDir, pkiDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	serviceIP, err := firstIP(opts.ServiceCIDR)
	if err != nil {
		return err
	}
	certs, err := writePKI(pkiDir, serviceIP)
	if err != nil {
		return err
	}
	e.CACertPEM = certs.caCertPEM
	e.ServiceAccountPublicKeyFile = certs.saVerifyingKey

	ports, err := FreePorts(3)
	if err != nil {
		return err
	}
	etcdClientPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2]

	token, err := randomToken()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(pkiDir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}

	bin := func(name string) string { return filepath.Join(opts.BinDir, name) }
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	etcd, err := e.run(Etcd, bin(Etcd),
		"--name=testenv",
		"--data-dir="+filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=testenv="+peerURL,
		// Nothing here outlives the test; fsync only costs time.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	if err := e.waitStarting(ctx, "etcd to be healthy", []*process{etcd}, httpOK(http.DefaultClient, etcdURL+"/health")); err != nil {
		return err
	}

	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + pkiDir,
		"--tls-cert-file=" + certs.servingCert,
		"--tls-private-key-file=" + certs.servingKey,
		"--client-ca-file=" + certs.caFile,
		"--service-account-issuer=" + opts.ServiceAccountIssuer,
		"--service-account-key-file=" + certs.saVerifyingKey,
		"--service-account-signing-key-file=" + certs.saSigningKey,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + opts.ServiceCIDR,
		"--allow-privileged=true",
		// The apiserver would publish 127.0.0.1 as the kubernetes Service's endpoint, which
		// endpoint validation rejects as loopback.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	apiserver, err := e.run(KubeAPIServer, bin(KubeAPIServer), append(apiArgs, opts.APIServerFlags...)...)
	if err != nil {
		return err
	}

	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	e.Config = &rest.Config{
		Host:            host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: certs.caCertPEM},
		// Tests create objects in bursts; the client-side default (5 QPS) would pace them.
		QPS:   200,
		Burst: 400,
	}
	if err := e.buildClients(); err != nil {
		return err
	}
	if err := e.waitStarting(ctx, "kube-apiserver to be ready", []*process{etcd, apiserver}, e.readyz); err != nil {
		return err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	if err := writeKubeconfig(e.Kubeconfig, host, certs.caCertPEM, token); err != nil {
		return err
	}

	stagesFile := filepath.Join(e.Dir, "kwok-stages.yaml")
	if err := writeKwokStages(stagesFile); err != nil {
		return err
	}
	if _, err := e.run(KubeControllerManager, bin(KubeControllerManager),
		"--kubeconfig="+e.Kubeconfig,
		"--service-account-private-key-file="+certs.saSigningKey,
		"--root-ca-file="+certs.caFile,
		"--service-cluster-ip-range="+opts.ServiceCIDR,
		"--leader-elect=false",
		"--controllers=*",
		"--secure-port=0",
	); err != nil {
		return err
	}
	if _, err := e.run(KubeScheduler, bin(KubeScheduler),
		"--kubeconfig="+e.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	); err != nil {
		return err
	}
	if _, err := e.run(Kwok, bin(Kwok),
		"--kubeconfig="+e.Kubeconfig,
		"--config="+stagesFile,
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"=fake",
		"--cidr="+opts.PodCIDR,
	); err != nil {
		return err
	}

	if err := e.createNode(ctx); err != nil {
		return err
	}
	if err := e.waitStarting(ctx, "node "+e.NodeName+" to be Ready", e.procs, e.nodeReady); err != nil {
		return err
	}
	if err := e.waitStarting(ctx, "ServiceAccount default/default", e.procs, func(ctx context.Context) (bool, error) {
		_, err := e.Clientset.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	}); err != nil {
		return err
	}
	e.log.Info("testenv ready", "dir", e.Dir, "apiserver", host, "podCIDR", e.PodCIDR)
	return nil
}

func (e *Env) run(name, binary string, args ...string) (*process, error) {
	p, err := startProcess(name, binary, args, e.logDir, e.Dir)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	e.log.Debug("testenv component started", "component", name, "pid", p.pid())
	return p, nil
}

// waitStarting waits for cond while start-up runs. Failing, it quotes the log of the component
// that exited or, on a timeout, of every component it was watching: the one at fault says why.
func (e *Env) waitStarting(ctx context.Context, what string, watch []*process, cond Condition) error {
	deadline, ok := ctx.Deadline()
	timeout := time.Until(deadline)
	if !ok {
		timeout = DefaultStartTimeout
	}
	healthy := func() error {
		for _, p := range watch {
			if p.exited() {
				return p.exitError()
			}
		}
		return nil
	}
	err := waitFor(ctx, timeout, what, cond, healthy)
	if err == nil || healthy() != nil {
		return err
	}
	for _, p := range watch {
		err = fmt.Errorf("%w\nlast lines of %s:\n%s", err, p.logPath, tail(p.logPath, logTailLines))
	}
	return err
}

func (e *Env) buildClients() error {
	hc, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return fmt.Errorf("building HTTP client for the apiserver: %w", err)
	}
	e.httpClient = hc
	cs, err := kubernetes.NewForConfigAndClient(e.Config, hc)
	if err != nil {
		return fmt.Errorf("building clientset: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(e.Config, hc)
	if err != nil {
		return fmt.Errorf("building dynamic client: %w", err)
	}
	ext, err := apiextensionsclientset.NewForConfigAndClient(e.Config, hc)
	if err != nil {
		return fmt.Errorf("building apiextensions client: %w", err)
	}
	e.Clientset, e.Dynamic, e.APIExtensions = cs, dyn, ext
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	return nil
}

func (e *Env) readyz(ctx context.Context) (bool, error) {
	body, err := e.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return false, fmt.Errorf("readyz: %w: %s", err, body)
	}
	return true, nil
}

// RESTMapper maps kinds to resources using the apiserver's discovery. It is the mapper Apply
// uses; call Reset on it after installing CRDs by other means than InstallCRDs.
func (e *Env) RESTMapper() meta.ResettableRESTMapper { return e.mapper }

// Healthy reports the first component that has exited, with the end of its log.
func (e *Env) Healthy() error {
	for _, p := range e.procs {
		if p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// Pids returns the process id of each component, keyed by component name.
func (e *Env) Pids() map[string]int {
	pids := make(map[string]int, len(e.procs))
	for _, p := range e.procs {
		pids[p.name] = p.pid()
	}
	return pids
}

// LogDir holds one log file per component while the environment runs.
func (e *Env) LogDir() string { return e.logDir }

// LogPath is where a component's stdout and stderr go while the environment runs.
func (e *Env) LogPath(component string) string { return filepath.Join(e.logDir, component+".log") }

// Stop terminates every component, waits until each is reaped and removes Dir. It is safe to
// call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() { e.stopErr = e.stop(false) })
	return e.stopErr
}

// StopKeepLogs is Stop, except that the components' logs survive in a new directory whose
// path it returns. Use it when a test has failed.
func (e *Env) StopKeepLogs() (string, error) {
	e.stopOnce.Do(func() { e.stopErr = e.stop(true) })
	return e.keptLogs, e.stopErr
}

func (e *Env) stop(keepLogs bool) error {
	// Clients of the apiserver first, so they do not log a storm of connection errors, then
	// the apiserver, then its storage.
	var clients, servers []*process
	for _, p := range e.procs {
		switch p.name {
		case Etcd, KubeAPIServer:
			servers = append(servers, p)
		default:
			clients = append(clients, p)
		}
	}
	stopAll(clients)
	for i := len(servers) - 1; i >= 0; i-- {
		servers[i].stop(10 * time.Second)
	}
	if e.httpClient != nil {
		e.httpClient.CloseIdleConnections()
	}

	var errs []error
	if keepLogs {
		kept, err := os.MkdirTemp("", "weft-testenv-logs-")
		if err == nil {
			err = os.Rename(e.logDir, filepath.Join(kept, "logs"))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("keeping testenv logs: %w", err))
		} else {
			e.keptLogs = filepath.Join(kept, "logs")
		}
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, fmt.Errorf("removing testenv directory: %w", err))
	}
	return errors.Join(errs...)
}

func stopAll(ps []*process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(5 * time.Second)
		}()
	}
	wg.Wait()
}

func httpOK(c *http.Client, url string) Condition {
	return func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, Permanent(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return true, nil
	}
}

// FreePorts asks the kernel for n distinct free loopback ports. Another process may take one
// before the component binds it; the component then exits and Start reports its log.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func firstIP(cidr string) (net.IP, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("parsing service CIDR: %w", err)
	}
	return net.IP(p.Masked().Addr().Next().AsSlice()), nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating admin token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func writeKubeconfig(path, host string, ca []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["weft-testenv"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["weft-testenv"] = &clientcmdapi.Context{Cluster: "weft-testenv", AuthInfo: "admin", Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "weft-testenv"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

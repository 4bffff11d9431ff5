package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/testenv"
)

// env is one real apiserver (+ etcd, controller-manager, scheduler, kwok)
// shared by the package's integration tests. With -short it is not
// started and those tests skip: the unit tests need no cluster.
var env *testenv.Env

// podCIDR is this package's own test subnet: kwok hands pod IPs out of it
// and the conformance test routes it into a network namespace.
const podCIDR = "10.251.0.0/24"

func TestMain(m *testing.M) {
	os.Exit(testenv.MainUnlessShort(m, testenv.Options{PodCIDR: podCIDR}, &env))
}

func requireEnv(t testing.TB) { t.Helper(); testenv.RequireEnv(t, env) }

func crdDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "deploy", "crds")
}

var crdsOnce sync.Mutex

// ensureCRDs installs Weft's CRDs if they are not installed.
func ensureCRDs(t testing.TB) {
	t.Helper()
	crdsOnce.Lock()
	defer crdsOnce.Unlock()
	if _, err := env.InstallCRDs(t.Context(), crdDir(t)); err != nil {
		t.Fatalf("installing CRDs: %v", err)
	}
}

// deleteCRDs removes them (and with them every profile and split) and waits
// until they are gone.
func deleteCRDs(t testing.TB) {
	t.Helper()
	crdsOnce.Lock()
	defer crdsOnce.Unlock()
	ctx := t.Context()
	names := []string{"serviceprofiles.linkerd.io", "trafficsplits.split.smi-spec.io"}
	for _, n := range names {
		err := env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, n, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("deleting CRD %s: %v", n, err)
		}
	}
	err := env.WaitFor(ctx, time.Minute, "CRDs gone", func(ctx context.Context) (bool, error) {
		for _, n := range names {
			_, err := env.APIExtensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
			if err == nil {
				return false, nil
			}
			if !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runningController is a control plane run in-process against env.
type runningController struct {
	*Controller
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

type cfgOption func(*Config)

// startController runs a control plane with loopback listeners and short
// timings, waits until it is synced, and stops it when the test ends.
func startController(t testing.TB, opts ...cfgOption) *runningController {
	t.Helper()
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{
		RestConfig:        env.Config,
		XDSListener:       xl,
		AdminListener:     al,
		Logger:            testLogger(),
		Registry:          reg,
		Debounce:          30 * time.Millisecond,
		DebounceMax:       300 * time.Millisecond,
		DiscoveryInterval: 200 * time.Millisecond,
		ShutdownGrace:     2 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningController{Controller: c, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Run(ctx) }()
	t.Cleanup(func() { rc.stop(t) })
	select {
	case <-c.Synced():
	case err := <-rc.done:
		rc.done <- err
		t.Fatalf("controller ended before syncing: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("controller did not sync within a minute")
	}
	return rc
}

// stop ends the controller and waits for Run to return; safe to call twice.
func (rc *runningController) stop(t testing.TB) {
	rc.cancel()
	select {
	case err, ok := <-rc.done:
		if ok {
			close(rc.done)
			if err != nil {
				t.Errorf("controller.Run: %v", err)
			}
		}
	case <-time.After(30 * time.Second):
		t.Error("controller.Run did not return within 30s of cancellation")
	}
}

func (rc *runningController) adminGet(path string) (int, string, error) {
	resp, err := http.Get(fmt.Sprintf("http://%s%s", rc.AdminAddr(), path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

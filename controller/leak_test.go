package controller

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weftmesh/weft/xds/adsclient"
)

// TestNoLeakAfterStreamsClose: proxies connect and go away, the pipeline
// stops; nothing it or the xds server started is left running.
func TestNoLeakAfterStreamsClose(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h := newHarness(t, 10*time.Millisecond)
	feedBase(h.store)
	for _, node := range []string{"web-1.app", "api-1.app", "api-2.app"} {
		c, err := adsclient.Dial(t.Context(), h.addr, node)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := waitADS(t.Context(), c, 10*time.Second, "config", func(v adsclient.View) bool { return v.Synced }); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	h.stop()
	goleak.VerifyNone(t, before)
}

// TestNoLeakAfterRunReturns: controller.Run against a real apiserver,
// with a proxy connected, leaves no goroutine once it returns.
func TestNoLeakAfterRunReturns(t *testing.T) {
	requireEnv(t)
	before := goleak.IgnoreCurrent()
	rc := startController(t)
	_, err := env.Apply(t.Context(), []byte(`
apiVersion: v1
kind: Namespace
metadata:
  name: leak
  annotations: {weft.io/inject: enabled}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: leak}
spec:
  containers: [{name: app, image: example.invalid/app:1}]
`))
	if err != nil {
		t.Fatal(err)
	}
	runningPods(t, "leak", "", 1)
	c, err := adsclient.Dial(t.Context(), rc.XDSAddr().String(), "p.leak")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waitADS(t.Context(), c, 30*time.Second, "config", func(v adsclient.View) bool { return v.Synced }); err != nil {
		t.Fatal(err)
	}
	c.Close()
	rc.stop(t)
	goleak.VerifyNone(t, before)
}

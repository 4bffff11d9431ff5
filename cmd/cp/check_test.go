package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/healthcheck"
	"github.com/weftmesh/weft/sds"
	"github.com/weftmesh/weft/testenv"
)

// adminGet reads cp's admin endpoint as weft --cp does.
type adminGet string

func (a adminGet) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+string(a)+path, nil)
	if err != nil {
		return nil, err
	}
	// A transport per call, closed after it: the webhook test checks for
	// leaked goroutines.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

// weft check's identity lines against the real cp: its /debug/identity
// says the CA is ready with the issuer of the Secret, and the check reads
// the Secret and the bundle the leader wrote as the CA does.
func TestCheckReadsTheRunningControlPlane(t *testing.T) {
	testenv.RequireEnv(t, env)
	ctx := t.Context()
	const ns = "weft-check"
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	anchor, err := sds.NewAnchor("cluster.local", now, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sds.NewIssuer("cluster.local", anchor, now, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.CoreV1().Secrets(ns).Create(ctx, sds.IssuerSecret(ns, healthcheck.IssuerSecretName, issuer, anchor), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addrs := make([]string, 2)
	for i := range addrs {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = lis.Addr().String()
		lis.Close()
	}
	runCommand(t, "--kubeconfig", env.Kubeconfig, "--identity", "--identity-namespace", ns, "--xds-addr", addrs[0],
		"--admin-addr", addrs[1], "--pod-name", "cp-0", "--log-level", "warn")

	cfg := healthcheck.Config{Kube: env.Clientset, APIExtensions: env.APIExtensions, Admin: adminGet(addrs[1]), Namespace: ns}
	var rep healthcheck.Report
	want := []string{
		"control plane admin endpoint says it is ready",
		"issuer Secret and trust bundle are readable and well-formed",
		"trust anchors are valid for at least 60 days",
		"issuer certificate is signed by a trust anchor",
		"issuer certificate is valid for at least 7 days",
		"control plane's CA is ready and uses the issuer in the Secret",
	}
	err = env.WaitFor(ctx, 30*time.Second, "weft check's control plane and identity lines to pass", func(ctx context.Context) (bool, error) {
		rep = healthcheck.Run(ctx, cfg)
		passed := map[string]bool{}
		for _, c := range rep.Categories {
			for _, ch := range c.Checks {
				passed[ch.Description] = ch.Result == healthcheck.StatusSuccess
			}
		}
		for _, w := range want {
			if !passed[w] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("%v: %+v", err, rep)
	}
}

package main

import (
	"strings"
	"testing"
)

func TestCommandRefusesBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--kubeconfig", "/nonexistent/kubeconfig"}, "loading kubeconfig /nonexistent/kubeconfig"},
		{[]string{"extra-arg"}, "unknown command"},
		{[]string{"--mtls"}, "--mtls requires --identity"},
		{[]string{"--identity", "--leaf-ttl", "10s"}, "--leaf-ttl 10s"},
		{[]string{"--identity", "--issuer-secret", ""}, "--issuer-secret: required"},
		{[]string{"--webhook-listen", ":8443"}, "--webhook-listen needs --webhook-cert and --webhook-key"},
		{[]string{"--webhook-listen", ":8443", "--webhook-cert", "c", "--webhook-key", "k", "--proxy-log-level", "loud"}, "--proxy-log-level \"loud\""},
		{[]string{"--webhook-listen", ":8443", "--webhook-cert", "c", "--webhook-key", "k", "--proxy-cpu-request", "-1"}, "--proxy-cpu-request \"-1\": want a positive quantity"},
		{[]string{"--webhook-listen", ":8443", "--webhook-cert", "c", "--webhook-key", "k", "--proxy-memory-request", "1Gi"}, "--proxy-memory-request 1Gi is above --proxy-memory-limit 256Mi"},
		{[]string{"--external-issuer", "ClusterIssuer/weft"}, "--external-issuer requires --identity"},
		{[]string{"--identity", "--external-issuer", "weft"}, "--external-issuer: issuer \"weft\": want <Kind>[.<group>]/<name>"},
		{[]string{"--identity", "--external-issuer", "Certificate/weft"}, `kind "Certificate" of group cert-manager.io is neither Issuer nor ClusterIssuer`},
		{[]string{"--identity", "--external-issuer", "Issuer/weft", "--external-issuer-timeout", "0s"}, "--external-issuer-timeout 0s"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := newCommand()
			cmd.SetArgs(tc.args)
			cmd.SetOut(new(strings.Builder))
			cmd.SetErr(new(strings.Builder))
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCommandDefaults(t *testing.T) {
	cmd := newCommand()
	for flag, want := range map[string]string{
		"xds-addr": ":8086", "admin-addr": ":9990", "cluster-domain": "cluster.local",
		"trust-domain": "cluster.local", "debounce": "100ms", "debounce-max": "1s", "workers": "4",
		"identity": "false", "mtls": "false", "identity-namespace": "weft-system",
		"issuer-secret": "weft-identity-issuer", "trust-bundle": "weft-trust-bundle",
		"leaf-ttl": "24h0m0s", "token-audience": "weft", "service-account": "weft-cp",
		"webhook-listen": "", "proxy-image": "envoyproxy/envoy:v1.40.0", "proxy-log-level": "warning",
		"proxy-cpu-request": "100m", "proxy-memory-request": "64Mi", "proxy-cpu-limit": "", "proxy-memory-limit": "256Mi",
		"external-issuer": "", "external-issuer-timeout": "30s",
	} {
		if got := cmd.Flags().Lookup(flag).DefValue; got != want {
			t.Errorf("--%s defaults to %q, want %q", flag, got, want)
		}
	}
}

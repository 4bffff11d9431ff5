package main

import (
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.uber.org/goleak"

	"github.com/weftmesh/weft/injector/capture"
	"github.com/weftmesh/weft/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		want    capture.Config
		wantErr string
	}{
		{name: "defaults", want: capture.DefaultConfig()},
		{name: "everything", args: []string{
			"--inbound-port=15006", "--outbound-port=15001", "--proxy-uid=1337",
			"--skip-inbound-ports= 22, 9000-9100", "--skip-outbound-ports=3306",
			"--skip-subnets=10.0.0.0/8,192.168.1.0/24", "--skip-subnets=172.16.0.0/12",
		}, want: capture.Config{
			InboundPort: 15006, OutboundPort: 15001, ProxyUID: 1337,
			SkipInboundPorts:  []mesh.PortRange{{First: 22, Last: 22}, {First: 9000, Last: 9100}},
			SkipOutboundPorts: []mesh.PortRange{{First: 3306, Last: 3306}},
			SkipSubnets: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("172.16.0.0/12"),
			},
		}},
		{name: "bad skip port", args: []string{"--skip-inbound-ports=abc"}, wantErr: `--skip-inbound-ports "abc"`},
		{name: "port names are not ports", args: []string{"--skip-outbound-ports=http"}, wantErr: `--skip-outbound-ports "http"`},
		{name: "port zero", args: []string{"--skip-outbound-ports=0"}, wantErr: `--skip-outbound-ports "0"`},
		{name: "bad subnet", args: []string{"--skip-subnets=10.0.0.0/33"}, wantErr: `--skip-subnets "10.0.0.0/33"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			cmd := &cobra.Command{SilenceUsage: true, SilenceErrors: true}
			addFlags(cmd.Flags(), &o)
			cmd.RunE = func(*cobra.Command, []string) error {
				c, err := o.config()
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(c, tc.want) {
					t.Errorf("config %+v, want %+v", c, tc.want)
				}
				return nil
			}
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// Values refused before anything runs: run must not reach iptables with them.
func TestRunRefusesBadValues(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := options{inboundPort: mesh.ProxyInboundPort, outboundPort: mesh.ProxyOutboundPort, proxyUID: mesh.ProxyUID, backend: "auto"}
	cases := []struct {
		name    string
		mod     func(*options)
		wantErr string
	}{
		{"backend", func(o *options) { o.backend = "ebpf" }, `--backend: backend "ebpf"`},
		{"ipv6 subnet", func(o *options) { o.skipSubnets = []string{"fd00::/8"} }, `--skip-subnets "fd00::/8": not an IPv4 CIDR`},
		{"same ports", func(o *options) { o.outboundPort = o.inboundPort }, "both 4143"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			o.dryRun = true
			err := run(t.Context(), o, io.Discard, log)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

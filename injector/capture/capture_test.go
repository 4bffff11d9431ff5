package capture_test

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/injector/capture"
	"github.com/weftmesh/weft/mesh"
)

var update = flag.Bool("update", false, "rewrite injector/capture/testdata golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./injector/capture -update)", err)
	}
	if !bytes.Equal([]byte(got), want) {
		t.Errorf("%s differs (run go test ./injector/capture -update and review the diff); got:\n%s", path, got)
	}
}

func saved(t *testing.T, name string) string {
	t.Helper()
	if name == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func withSkips() capture.Config {
	c := capture.DefaultConfig()
	c.SkipInboundPorts = []mesh.PortRange{{First: 22, Last: 22}, {First: 9000, Last: 9100}}
	c.SkipOutboundPorts = []mesh.PortRange{{First: 3306, Last: 3306}, {First: 5000, Last: 5001}}
	c.SkipSubnets = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16"), netip.MustParsePrefix("192.168.0.0/24")}
	return c
}

func TestRestoreGolden(t *testing.T) {
	cases := []struct {
		name  string
		cfg   capture.Config
		saved string // testdata file holding iptables-save output, "" for an empty table
	}{
		// A fresh pod: chains and both jumps.
		{"default", capture.DefaultConfig(), ""},
		{"skips", withSkips(), ""},
		// A second run: chains refilled, the jumps already there are not added again.
		{"applied", withSkips(), "applied.saved"},
		// Two copies of one jump (kept: the first), a jump without the comment (still a jump
		// to Weft's chain: kept, so not added), a CNI rule and a filter-table rule that only
		// look alike: untouched.
		{"duplicated", capture.DefaultConfig(), "duplicated.saved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := capture.Restore(tc.cfg, saved(t, tc.saved))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".rules", got)
			for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
				if strings.HasPrefix(line, "-A ") && !strings.Contains(line, `--comment "weft: `) {
					t.Errorf("rule without a weft comment: %s", line)
				}
			}
		})
	}
}

func TestRemoveGolden(t *testing.T) {
	for _, name := range []string{"applied", "duplicated"} {
		t.Run(name, func(t *testing.T) {
			golden(t, name+".remove", capture.Remove(saved(t, name+".saved")))
		})
	}
	// Chains and jumps of the same names in other tables are not Weft's.
	other := "*mangle\n:WEFT-OUTBOUND - [0:0]\n-A OUTPUT -p tcp -m comment --comment \"weft: outbound TCP to the proxy\" -j WEFT-OUTBOUND\nCOMMIT\n" +
		"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
	if got := capture.Remove(other); got != "" {
		t.Errorf("Remove of a nat table without Weft's rules = %q, want nothing", got)
	}
	if got, err := capture.Restore(capture.DefaultConfig(), other); err != nil || !strings.Contains(got, "-A OUTPUT ") {
		t.Errorf("Restore took a mangle rule for the nat jump (err %v):\n%s", err, got)
	}
}

func TestRestoreRefusesBadConfig(t *testing.T) {
	mod := func(f func(*capture.Config)) capture.Config {
		c := capture.DefaultConfig()
		f(&c)
		return c
	}
	cases := []struct {
		name    string
		cfg     capture.Config
		wantErr string
	}{
		{"no inbound port", mod(func(c *capture.Config) { c.InboundPort = 0 }), "inbound port 0"},
		{"outbound port too big", mod(func(c *capture.Config) { c.OutboundPort = 70000 }), "outbound port 70000"},
		{"same ports", mod(func(c *capture.Config) { c.OutboundPort = c.InboundPort }), "both 4143"},
		{"negative uid", mod(func(c *capture.Config) { c.ProxyUID = -1 }), "proxy uid -1"},
		{"ipv6 subnet", mod(func(c *capture.Config) { c.SkipSubnets = []netip.Prefix{netip.MustParsePrefix("fd00::/8")} }), "fd00::/8 is not an IPv4 CIDR"},
		{"reversed range", mod(func(c *capture.Config) { c.SkipInboundPorts = []mesh.PortRange{{First: 10, Last: 5}} }), "10-5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := capture.Restore(tc.cfg, "")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseBackend(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want capture.Backend
		ok   bool
	}{{"auto", capture.Auto, true}, {"nft", capture.NFT, true}, {"legacy", capture.Legacy, true}, {"iptables", "", false}, {"", "", false}} {
		got, err := capture.ParseBackend(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseBackend(%q) = %q, %v", tc.in, got, err)
		}
	}
}

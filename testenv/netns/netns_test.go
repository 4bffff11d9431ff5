package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weftmesh/weft/testenv/netns"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A subnet of its own: testenv's default pod CIDR (10.244.0.0/16) may be in use by a test
// package running at the same time.
var subnet = netip.MustParsePrefix("10.253.7.0/24")

func newNS(t *testing.T) *netns.Namespace {
	t.Helper()
	netns.Require(t)
	n, err := netns.New(t.Context(), netns.Config{Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("closing namespace: %v", err)
		}
	})
	return n
}

// serveEcho answers each line with "<local address> <line>", so the client learns which
// listener served it.
func serveEcho(t *testing.T, l net.Listener) {
	t.Helper()
	netns.Serve(t, l, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "%s %s %s", c.LocalAddr(), c.RemoteAddr().(*net.TCPAddr).IP, line)
		c.Close()
	})
}

func TestListenInNamespaceDialFromHost(t *testing.T) {
	n := newNS(t)
	ctx := t.Context()
	addrs := []netip.Addr{netip.MustParseAddr("10.253.7.1"), netip.MustParseAddr("10.253.7.2")}
	for _, a := range addrs {
		if err := n.AddAddr(ctx, a); err != nil {
			t.Fatal(err)
		}
		l, err := n.Listen("tcp", netip.AddrPortFrom(a, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		serveEcho(t, l)
	}

	for _, a := range addrs {
		t.Run(a.String(), func(t *testing.T) {
			target := netip.AddrPortFrom(a, 8080).String()
			// The address lives only in the namespace: the host cannot bind it.
			if l, err := net.Listen("tcp", target); err == nil {
				l.Close()
				t.Fatalf("host could listen on %s: the address leaked out of the namespace", target)
			}
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "hello\n")
			reply, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			// The server saw the host end of the veth as peer: the traffic crossed the veth,
			// not loopback.
			want := fmt.Sprintf("%s %s hello\n", target, n.HostAddr)
			if string(reply) != want {
				t.Errorf("reply %q, want %q", reply, want)
			}
		})
	}
}

func TestDialFromNamespaceToHostEnd(t *testing.T) {
	n := newNS(t)
	ctx := t.Context()
	podIP := netip.MustParseAddr("10.253.7.9")
	if err := n.AddAddr(ctx, podIP); err != nil {
		t.Fatal(err)
	}
	// A server on the host end, as the control plane would be for a proxy in the namespace.
	l, err := net.Listen("tcp", netip.AddrPortFrom(n.HostAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, l)

	c, err := n.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "from the pod\n")
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s %s from the pod\n", l.Addr(), podIP); string(reply) != want {
		t.Errorf("reply %q, want %q", reply, want)
	}
}

func TestNamespaceReachesOnlyTheTestSubnet(t *testing.T) {
	n := newNS(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// 198.51.100.1 (TEST-NET-2) stands for any address outside the subnet: the namespace has
	// no route there, so the dial fails at once instead of leaving through the host.
	_, err := n.DialContext(ctx, "tcp", "198.51.100.1:80")
	if err == nil || !strings.Contains(err.Error(), "network is unreachable") {
		t.Fatalf("dial outside the subnet: %v, want network is unreachable", err)
	}
}

func TestHostBlackholesTheSubnet(t *testing.T) {
	n := newNS(t)
	out, err := exec.Command("ip", "route", "show", "exact", n.Subnet.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "blackhole "+n.Subnet.String()) {
		t.Fatalf("no blackhole route for %s on the host: %q", n.Subnet, out)
	}
	// An address of the subnet that no namespace holds goes nowhere.
	d := net.Dialer{Timeout: 5 * time.Second}
	if c, err := d.DialContext(t.Context(), "tcp", "10.253.7.200:80"); err == nil {
		c.Close()
		t.Fatal("dial to an unassigned test address succeeded")
	}
}

func TestAddAddrRejectsAddressesOutsideTheSubnet(t *testing.T) {
	n := newNS(t)
	tests := []struct {
		name string
		addr string
	}{
		{"outside", "10.253.8.1"},
		{"host end", n.HostAddr.String()},
		{"public", "8.8.8.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := n.AddAddr(t.Context(), netip.MustParseAddr(tt.addr))
			if err == nil || !strings.Contains(err.Error(), "is not a free address of subnet") {
				t.Fatalf("AddAddr(%s) = %v, want a rejection", tt.addr, err)
			}
		})
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	netns.Require(t)
	ctx := t.Context()
	n, err := netns.New(ctx, netns.Config{Subnet: netip.MustParsePrefix("10.253.9.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("10.253.9.1")
	if err := n.AddAddr(ctx, a); err != nil {
		t.Fatal(err)
	}
	l, err := n.Listen("tcp", netip.AddrPortFrom(a, 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	if _, err := os.Stat(filepath.Join("/run/netns", n.Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s still exists (stat: %v)", n.Name, err)
	}
	checks := [][]string{
		{"link", "show", n.HostLink},
		{"route", "show", "exact", "10.253.9.0/24"},
		{"route", "show", "exact", a.String() + "/32"},
	}
	for _, args := range checks {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err == nil && len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("ip %s still shows: %s", strings.Join(args, " "), out)
		}
	}
	// No dial to the address now: with its routes gone it would follow the default route.
}

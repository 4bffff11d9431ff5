package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/injector/capture"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/testenv/netns"
)

// TestCaptureInANetworkNamespace runs the program's rules in a network namespace joined to
// the host by a veth pair, with stand-ins listening on the proxy's ports and an app
// listening on its own, and shows where connections land, once per iptables backend.
//
// The namespace is the pod: its address is the pod IP, the host end of the veth is the rest
// of the network (two addresses, one inside a skip subnet). The stand-ins answer with who
// they are and the connection's original destination (SO_ORIGINAL_DST), which is what the
// proxy reads to know where a redirected connection was going.
func TestCaptureInANetworkNamespace(t *testing.T) {
	for i, b := range []capture.Backend{capture.NFT, capture.Legacy} {
		t.Run(string(b), func(t *testing.T) {
			netns.RequireTools(t, b.SaveCommand(), b.RestoreCommand())
			// A subnet per backend and of its own: other packages' namespaces may be up.
			testCapture(t, b, netip.MustParsePrefix(fmt.Sprintf("10.253.%d.0/24", 41+i)))
		})
	}
}

const ordinaryUID = 1000

func testCapture(t *testing.T, backend capture.Backend, subnet netip.Prefix) {
	ctx := t.Context()
	n, err := netns.New(ctx, netns.Config{Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("closing namespace: %v", err)
		}
	})
	base := subnet.Addr().As4()
	addr := func(last byte) netip.Addr { a := base; a[3] = last; return netip.AddrFrom4(a) }
	podIP := addr(1)
	remote := addr(249)   // another machine
	skipped := n.HostAddr // .254, inside the skip subnet below
	skipSubnet := netip.PrefixFrom(addr(252), 30)
	if err := n.AddAddr(ctx, podIP); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "ip", "addr", "add", remote.String()+"/32", "dev", n.HostLink).CombinedOutput(); err != nil {
		t.Fatalf("adding %s to the host end: %v: %s", remote, err, out)
	}

	// In the pod: the proxy's listeners and the app.
	inNS := func(name, address string, origDst bool) {
		l, err := n.Listen("tcp", address)
		if err != nil {
			t.Fatal(err)
		}
		serve(t, l, name, origDst)
	}
	inNS("inbound", fmt.Sprintf("0.0.0.0:%d", mesh.ProxyInboundPort), true)
	inNS("outbound", fmt.Sprintf("0.0.0.0:%d", mesh.ProxyOutboundPort), true)
	inNS("health", fmt.Sprintf("0.0.0.0:%d", mesh.ProxyHealthPort), false)
	inNS("app", "0.0.0.0:8080", false)
	inNS("app", "0.0.0.0:9090", false)
	// Elsewhere: servers on the host end.
	for _, a := range []netip.AddrPort{
		netip.AddrPortFrom(remote, 8080), netip.AddrPortFrom(remote, 3306), netip.AddrPortFrom(skipped, 8080),
	} {
		l, err := net.Listen("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		serve(t, l, "remote", false)
	}

	opts := options{
		inboundPort: mesh.ProxyInboundPort, outboundPort: mesh.ProxyOutboundPort, proxyUID: mesh.ProxyUID,
		skipIn: "9090", skipOut: "3306,5000-5001", skipSubnets: []string{skipSubnet.String()},
		backend: string(backend),
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	inPod := func(o options) string {
		t.Helper()
		var out strings.Builder
		if err := n.Do(func() error { return run(ctx, o, &out, log) }); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	save := func() string {
		t.Helper()
		var s string
		if err := n.Do(func() error {
			var err error
			s, err = capture.Save(ctx, backend)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return s
	}

	// --dry-run prints the rules and changes nothing.
	before := save()
	dry := opts
	dry.dryRun = true
	cfg, err := opts.config()
	if err != nil {
		t.Fatal(err)
	}
	want, err := capture.Restore(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := inPod(dry); got != want {
		t.Errorf("--dry-run printed\n%s\nwant\n%s", got, want)
	}
	if after := save(); normalise(after) != normalise(before) {
		t.Errorf("--dry-run changed the nat table:\n%s", after)
	}

	inPod(opts)
	first := save()
	if !strings.Contains(first, ":"+capture.InboundChain) || !strings.Contains(first, ":"+capture.OutboundChain) {
		t.Fatalf("chains missing after the run:\n%s", first)
	}

	cases := []struct {
		name string
		uid  int // -1: from outside the pod (the host)
		to   netip.AddrPort
		want string
	}{
		{"outbound from the app", ordinaryUID, netip.AddrPortFrom(remote, 8080), fmt.Sprintf("outbound %s:8080", remote)},
		{"outbound from root (not the proxy uid)", 0, netip.AddrPortFrom(remote, 8080), fmt.Sprintf("outbound %s:8080", remote)},
		{"outbound from the proxy uid", int(mesh.ProxyUID), netip.AddrPortFrom(remote, 8080), fmt.Sprintf("remote %s:8080", remote)},
		{"outbound to a skip port", ordinaryUID, netip.AddrPortFrom(remote, 3306), fmt.Sprintf("remote %s:3306", remote)},
		{"outbound to a skip subnet", ordinaryUID, netip.AddrPortFrom(skipped, 8080), fmt.Sprintf("remote %s:8080", skipped)},
		{"outbound over loopback", ordinaryUID, netip.MustParseAddrPort("127.0.0.1:8080"), "app 127.0.0.1:8080"},
		{"inbound to the app port", -1, netip.AddrPortFrom(podIP, 8080), fmt.Sprintf("inbound %s:8080", podIP)},
		{"inbound to a skip port", -1, netip.AddrPortFrom(podIP, 9090), fmt.Sprintf("app %s:9090", podIP)},
		{"inbound to the health port", -1, netip.AddrPortFrom(podIP, uint16(mesh.ProxyHealthPort)), fmt.Sprintf("health %s:%d", podIP, mesh.ProxyHealthPort)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ask(t, n, tc.uid, tc.to); got != tc.want {
				t.Errorf("a connection to %s (uid %d) reached %q, want %q", tc.to, tc.uid, got, tc.want)
			}
		})
	}

	// A second run leaves the same rule set.
	inPod(opts)
	if second := save(); normalise(second) != normalise(first) {
		t.Errorf("a second run changed the rules:\nfirst:\n%s\nsecond:\n%s", first, second)
	}

	// --remove takes out everything of Weft's, and the traffic flows as before.
	rm := opts
	rm.remove = true
	inPod(rm)
	if after := save(); strings.Contains(after, "weft") || strings.Contains(after, "WEFT-") {
		t.Errorf("rules left after --remove:\n%s", after)
	}
	if got := ask(t, n, ordinaryUID, netip.AddrPortFrom(remote, 8080)); got != fmt.Sprintf("remote %s:8080", remote) {
		t.Errorf("after --remove an outbound connection reached %q", got)
	}
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// normalise drops what differs between two iptables-save runs of the same rules: the
// timestamps in comments and the packet counters.
func normalise(saved string) string {
	var out []string
	for _, line := range strings.Split(saved, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, counters.ReplaceAllString(line, "[0:0]"))
	}
	return strings.Join(out, "\n")
}

// serve answers every connection with name and an address: the original destination
// (SO_ORIGINAL_DST) for a stand-in proxy, else the address it was accepted on.
func serve(t *testing.T, l net.Listener, name string, origDst bool) {
	t.Helper()
	netns.Serve(t, l, func(c net.Conn) {
		where := c.LocalAddr().String()
		if origDst {
			if d, err := originalDst(c.(*net.TCPConn)); err != nil {
				where = "error: " + err.Error()
			} else {
				where = d.String()
			}
		}
		fmt.Fprintf(c, "%s %s\n", name, where)
		c.Close()
	})
}

// originalDst reads where a redirected connection was going: netfilter keeps it in the
// conntrack entry and returns it as a sockaddr_in for SO_ORIGINAL_DST (linux/netfilter_ipv4.h),
// fetched with the ipv6_mreq-sized getsockopt, as proxies do.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var mreq *unix.IPv6Mreq
	var serr error
	if err := raw.Control(func(fd uintptr) {
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", serr)
	}
	b := mreq.Multiaddr
	port := binary.BigEndian.Uint16(b[2:4])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
}

// ask connects to to and returns the first line the server says. uid >= 0 dials from inside
// the pod as that user: the socket's owner is the thread's fsuid when it is created, which is
// what the owner match compares, so the thread (locked, inside the namespace) switches its
// fsuid for the socket call only. uid -1 dials from the host.
func ask(t *testing.T, n *netns.Namespace, uid int, to netip.AddrPort) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var c net.Conn
	var err error
	if uid < 0 {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", to.String())
	} else {
		err = n.Do(func() error {
			prev, err := unix.SetfsuidRetUid(uid)
			if err != nil {
				return fmt.Errorf("setfsuid %d: %w", uid, err)
			}
			defer unix.SetfsuidRetUid(prev)
			var d net.Dialer
			var derr error
			c, derr = d.DialContext(ctx, "tcp", to.String())
			return derr
		})
	}
	if err != nil {
		return "dial error: " + err.Error()
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "read error: " + err.Error()
	}
	return strings.TrimSpace(line)
}

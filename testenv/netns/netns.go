// Package netns gives tests addresses outside loopback that exist only on this machine: a
// network namespace joined to the host by a veth pair, with addresses added inside it and
// host routes to them. Test servers listen inside the namespace on the pod IPs kwok hands out,
// so EndpointSlices (which refuse loopback) can point at something real.
//
// Safety: the host blackholes the whole test subnet, so a packet for a test address never
// follows the default route out of the machine, whether or not the veth still exists; the
// namespace has a route to the test subnet only. It needs root and iproute2's ip.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Available reports why namespaces cannot be made here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netns: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("netns: ip (iproute2) not found in PATH: apt-get install iproute2")
	}
	return nil
}

// Require is the first line of a test that needs network namespaces. Where they cannot be
// made (not root, no ip) the test is skipped, saying why; but when the CI environment
// variable is set (.ci/run sets CI=true) it fails instead, so that a CI machine lacking root
// cannot pass by skipping the tests that matter most.
func Require(t testing.TB) {
	t.Helper()
	require(t, os.LookupEnv, Available())
}

// require skips or fails t over unavailable (nil: carry on); lookupEnv is os.LookupEnv
// outside its own test.
func require(t testing.TB, lookupEnv func(string) (string, bool), unavailable error) {
	t.Helper()
	if unavailable == nil {
		return
	}
	if underCI(lookupEnv) {
		t.Fatalf("%v (CI is set: a test that needs network namespaces fails here instead of skipping)", unavailable)
		return
	}
	t.Skip(unavailable.Error())
}

// underCI says whether CI is set to anything but empty, "0" or "false" (CI systems set
// CI=true; a developer may set CI=false to run their way).
func underCI(lookupEnv func(string) (string, bool)) bool {
	v, ok := lookupEnv("CI")
	if !ok {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "false":
		return false
	}
	return true
}

// Config describes one namespace.
type Config struct {
	// Subnet is the test range. The host blackholes it, the namespace routes only it, and
	// every address added with AddAddr must lie in it. Tests that run in parallel (different
	// packages) should use different subnets: the first to close removes the blackhole.
	Subnet netip.Prefix
	// HostAddr is the host end's address, the source of host-to-namespace traffic. Default: the
	// last address of Subnet (kwok hands pod IPs out from the start of its CIDR).
	HostAddr netip.Addr
}

// Namespace is a network namespace with a veth pair to the host.
type Namespace struct {
	// Name is the namespace's name for `ip netns` (/run/netns/<Name>).
	Name string
	// HostLink and NSLink are the host and namespace ends of the veth pair.
	HostLink, NSLink string
	// Subnet and HostAddr are as configured, defaults applied.
	Subnet   netip.Prefix
	HostAddr netip.Addr

	mu            sync.Mutex
	addrs         []netip.Addr
	ownsBlackhole bool
	closed        bool
}

// New creates a namespace and its veth pair, blackholes cfg.Subnet on the host and routes it
// from the namespace to the host end. On error, whatever was made is removed again.
func New(ctx context.Context, cfg Config) (*Namespace, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if !cfg.Subnet.IsValid() {
		return nil, errors.New("netns: Config.Subnet is required")
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if !cfg.HostAddr.IsValid() {
		cfg.HostAddr = lastAddr(cfg.Subnet)
	}
	if !cfg.Subnet.Contains(cfg.HostAddr) {
		return nil, fmt.Errorf("netns: HostAddr %s is outside Subnet %s", cfg.HostAddr, cfg.Subnet)
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return nil, fmt.Errorf("netns: naming namespace: %w", err)
	}
	id := hex.EncodeToString(suffix)
	n := &Namespace{
		Name:     "weft-test-" + id,
		HostLink: "wfh" + id, // link names are limited to 15 bytes
		NSLink:   "wfn" + id,
		Subnet:   cfg.Subnet,
		HostAddr: cfg.HostAddr,
	}
	if err := n.setUp(ctx); err != nil {
		return nil, errors.Join(err, n.Close())
	}
	return n, nil
}

func (n *Namespace) setUp(ctx context.Context) error {
	if err := ip(ctx, "netns", "add", n.Name); err != nil {
		return err
	}
	// The blackhole goes in before any route to the namespace exists.
	switch err := ip(ctx, "route", "add", "blackhole", n.Subnet.String()); {
	case err == nil:
		n.ownsBlackhole = true
	case errors.Is(err, errExists):
		// Another namespace of this test binary (or a parallel one) already guards the subnet.
	default:
		return err
	}
	steps := [][]string{
		{"link", "add", n.HostLink, "type", "veth", "peer", "name", n.NSLink, "netns", n.Name},
		{"addr", "add", hostPrefix(n.HostAddr).String(), "dev", n.HostLink},
		{"link", "set", n.HostLink, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "link", "set", n.NSLink, "up"},
		// The namespace reaches the test subnet, and nothing else: replies to the host end.
		{"-n", n.Name, "route", "add", n.Subnet.String(), "dev", n.NSLink},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// AddAddr gives the namespace an address (it must be in Subnet) and routes it from the host
// through the veth, with the host end's address as source.
func (n *Namespace) AddAddr(ctx context.Context, addr netip.Addr) error {
	if !n.Subnet.Contains(addr) || addr == n.HostAddr {
		return fmt.Errorf("netns %s: address %s is not a free address of subnet %s", n.Name, addr, n.Subnet)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("netns %s: closed", n.Name)
	}
	p := hostPrefix(addr).String()
	if err := ip(ctx, "-n", n.Name, "addr", "add", p, "dev", n.NSLink); err != nil {
		return err
	}
	if err := ip(ctx, "route", "add", p, "dev", n.HostLink, "src", n.HostAddr.String()); err != nil {
		return err
	}
	n.addrs = append(n.addrs, addr)
	return nil
}

// Addrs lists the addresses added with AddAddr.
func (n *Namespace) Addrs() []netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.Addr(nil), n.addrs...)
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn creates belong to the
// namespace for good; goroutines fn starts do not run in it.
func (n *Namespace) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no deferred UnlockOSThread: if the thread cannot return to the host
		// namespace, the goroutine ends locked and the runtime discards the thread.
		host, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: opening the host namespace: %w", n.Name, err)
			return
		}
		defer host.Close()
		target, err := os.Open(filepath.Join("/run/netns", n.Name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: opening: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: entering: %w", n.Name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("netns %s: returning to the host namespace: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Listen opens a listener inside the namespace, e.g. Listen("tcp", "10.244.0.1:8080") for a
// test server on a pod IP. Accept and serve on it from any goroutine.
func (n *Namespace) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: listening on %s %s: %w", n.Name, network, address, err)
	}
	return l, nil
}

// DialContext connects from inside the namespace, as a client running in a pod would.
func (n *Namespace) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: dialing %s %s: %w", n.Name, network, address, err)
	}
	return c, nil
}

// Close removes the veth pair (and with it the host routes through it), the namespace and,
// if this namespace added it, the blackhole route. Listeners still open inside stop working.
// Close is safe to call more than once.
func (n *Namespace) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	// Cleanup must run even if the test's context has ended.
	ctx := context.Background()
	var errs []error
	if err := ip(ctx, "link", "del", n.HostLink); err != nil && !errors.Is(err, errNotFound) {
		errs = append(errs, err)
	}
	if err := ip(ctx, "netns", "del", n.Name); err != nil && !errors.Is(err, errNotFound) {
		errs = append(errs, err)
	}
	if n.ownsBlackhole {
		if err := ip(ctx, "route", "del", "blackhole", n.Subnet.String()); err != nil && !errors.Is(err, errNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var (
	errExists   = errors.New("already exists")
	errNotFound = errors.New("not found")
)

// ipError is a failed iproute2 command. kind is errExists or errNotFound when ip said so, which
// setup and cleanup tolerate in places.
type ipError struct {
	args   []string
	stderr string
	err    error
	kind   error
}

func (e *ipError) Error() string {
	return fmt.Sprintf("ip %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *ipError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.err, e.kind}
}

func ip(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		e := &ipError{args: args, stderr: strings.TrimSpace(stderr.String()), err: err}
		switch {
		case strings.Contains(e.stderr, "File exists"):
			e.kind = errExists
		case strings.Contains(e.stderr, "Cannot find device"), strings.Contains(e.stderr, "No such file"),
			strings.Contains(e.stderr, "No such process"), strings.Contains(e.stderr, "does not exist"):
			e.kind = errNotFound
		}
		return e
	}
	return nil
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// lastAddr is the last address of p that is not its IPv4 broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	if a.Is4() && p.Bits() < 31 {
		a = a.Prev()
	}
	return a
}

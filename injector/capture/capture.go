// Package capture writes the iptables rules that send a meshed pod's TCP traffic through its
// proxy: inbound connections to the proxy's inbound port, outbound connections to its
// outbound port. It runs once per pod, in the pod's network namespace, from the init
// container cmd/capture.
//
// The rules live in two chains of Weft's own in the nat table, WEFT-INBOUND (jumped to from
// PREROUTING) and WEFT-OUTBOUND (from OUTPUT), and every rule carries a "weft:" comment, so
// `iptables-save -t nat | grep weft` finds all of them and Remove takes them out again.
// Applying is idempotent: the chains are flushed and refilled, and a jump is added only when
// the built-in chain does not already have it (extra copies are deleted), so running twice
// leaves the rule set of running once.
//
// Only IPv4 is captured; IPv6 traffic bypasses the proxy.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/mesh"
)

// Chains of Weft's own.
const (
	InboundChain  = "WEFT-INBOUND"
	OutboundChain = "WEFT-OUTBOUND"
)

// Config is what the rules need to know.
type Config struct {
	// InboundPort and OutboundPort are the proxy's listeners (mesh.ProxyInboundPort,
	// mesh.ProxyOutboundPort).
	InboundPort, OutboundPort uint32
	// ProxyUID is the proxy's user; its own connections go out as they are.
	ProxyUID int64
	// SkipInboundPorts and SkipOutboundPorts bypass the proxy (ranges as the annotations
	// give them).
	SkipInboundPorts, SkipOutboundPorts []mesh.PortRange
	// SkipSubnets are destinations reached without the proxy (IPv4).
	SkipSubnets []netip.Prefix
}

// DefaultConfig is the proxy's ports and user from package mesh, nothing skipped.
func DefaultConfig() Config {
	return Config{InboundPort: mesh.ProxyInboundPort, OutboundPort: mesh.ProxyOutboundPort, ProxyUID: mesh.ProxyUID}
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	var errs []error
	for _, p := range []struct {
		name string
		port uint32
	}{{"inbound port", c.InboundPort}, {"outbound port", c.OutboundPort}} {
		if p.port < 1 || p.port > 65535 {
			errs = append(errs, fmt.Errorf("%s %d is not a port number", p.name, p.port))
		}
	}
	if c.InboundPort == c.OutboundPort {
		errs = append(errs, fmt.Errorf("inbound and outbound ports are both %d", c.InboundPort))
	}
	if c.ProxyUID < 0 || c.ProxyUID > 1<<32-2 {
		errs = append(errs, fmt.Errorf("proxy uid %d is not a uid", c.ProxyUID))
	}
	for _, s := range c.SkipSubnets {
		if !s.IsValid() || !s.Addr().Is4() {
			errs = append(errs, fmt.Errorf("skip subnet %s is not an IPv4 CIDR (only IPv4 is captured)", s))
		}
	}
	for _, list := range [][]mesh.PortRange{c.SkipInboundPorts, c.SkipOutboundPorts} {
		for _, r := range list {
			if r.First < 1 || r.Last > 65535 || r.First > r.Last {
				errs = append(errs, fmt.Errorf("skip port range %d-%d is not a port range", r.First, r.Last))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return nil
}

// proxyPorts are never redirected on the way in: the proxy's own listeners, including the
// health port kubelet probes and the admin port.
func (c Config) proxyPorts() []uint32 {
	ports := []uint32{c.InboundPort, c.OutboundPort, mesh.ProxyAdminPort, mesh.ProxyHealthPort}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// jump is one rule in a built-in chain that enters a chain of Weft's.
type jump struct {
	from, to, comment string
}

var jumps = []jump{
	{"PREROUTING", InboundChain, "weft: inbound TCP to the proxy"},
	{"OUTPUT", OutboundChain, "weft: outbound TCP to the proxy"},
}

func (j jump) rule() string {
	return fmt.Sprintf("-p tcp -m comment --comment %q -j %s", j.comment, j.to)
}

// Restore is the iptables-restore input (for --noflush) that makes the nat table hold
// exactly Weft's rules for c, given the table as iptables-save -t nat printed it now
// (saved; "" for a table that has nothing of Weft's).
func Restore(c Config, saved string) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, chain := range []string{InboundChain, OutboundChain} {
		// Declaring a chain creates it, and -F empties it if it already existed.
		fmt.Fprintf(&b, ":%s - [0:0]\n-F %s\n", chain, chain)
	}

	rule := func(chain, match, comment, target string) {
		b.WriteString("-A " + chain)
		if match != "" {
			b.WriteString(" " + match)
		}
		fmt.Fprintf(&b, " -m comment --comment %q -j %s\n", comment, target)
	}
	for _, p := range c.proxyPorts() {
		rule(InboundChain, "-p tcp --dport "+strconv.FormatUint(uint64(p), 10), "weft: proxy port", "RETURN")
	}
	for _, r := range c.SkipInboundPorts {
		rule(InboundChain, "-p tcp --dport "+portRange(r), "weft: skip-inbound-ports", "RETURN")
	}
	rule(InboundChain, "-p tcp", "weft: to the proxy inbound port", "REDIRECT --to-ports "+strconv.FormatUint(uint64(c.InboundPort), 10))

	rule(OutboundChain, "-m owner --uid-owner "+strconv.FormatInt(c.ProxyUID, 10), "weft: proxy uid", "RETURN")
	rule(OutboundChain, "-o lo", "weft: loopback", "RETURN")
	for _, r := range c.SkipOutboundPorts {
		rule(OutboundChain, "-p tcp --dport "+portRange(r), "weft: skip-outbound-ports", "RETURN")
	}
	for _, s := range c.SkipSubnets {
		rule(OutboundChain, "-d "+s.Masked().String(), "weft: skip-subnets", "RETURN")
	}
	rule(OutboundChain, "-p tcp", "weft: to the proxy outbound port", "REDIRECT --to-ports "+strconv.FormatUint(uint64(c.OutboundPort), 10))

	existing := jumpsIn(saved)
	for _, j := range jumps {
		found := existing[j]
		if len(found) == 0 {
			b.WriteString("-A " + j.from + " " + j.rule() + "\n")
			continue
		}
		// Keep the first, as iptables-save printed it; delete copies a race or a hand
		// left behind.
		for _, extra := range found[1:] {
			b.WriteString("-D " + j.from + " " + extra + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// Remove is the iptables-restore input (for --noflush) that takes every rule of Weft's out
// of the nat table, given it as iptables-save -t nat printed it; "" when there is nothing
// to remove.
func Remove(saved string) string {
	var b strings.Builder
	for _, j := range jumps {
		for _, r := range jumpsIn(saved)[j] {
			b.WriteString("-D " + j.from + " " + r + "\n")
		}
	}
	nat := natLines(saved)
	for _, chain := range []string{InboundChain, OutboundChain} {
		if slices.ContainsFunc(nat, func(line string) bool { return strings.HasPrefix(line, ":"+chain+" ") }) {
			fmt.Fprintf(&b, "-F %s\n-X %s\n", chain, chain)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return "*nat\n" + b.String() + "COMMIT\n"
}

// jumpsIn finds, in iptables-save output, the rules of each built-in chain of the nat table
// that jump to a chain of Weft's, as printed after "-A <chain> ".
func jumpsIn(saved string) map[jump][]string {
	out := map[jump][]string{}
	for _, line := range natLines(saved) {
		for _, j := range jumps {
			prefix := "-A " + j.from + " "
			if strings.HasPrefix(line, prefix) && (strings.HasSuffix(line, " -j "+j.to) || strings.Contains(line, " -j "+j.to+" ")) {
				out[j] = append(out[j], strings.TrimPrefix(line, prefix))
			}
		}
	}
	return out
}

// natLines are the lines of iptables-save output between "*nat" and the next table.
func natLines(saved string) []string {
	var out []string
	inNat := false
	for _, line := range strings.Split(saved, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "*") {
			inNat = line == "*nat"
			continue
		}
		if inNat {
			out = append(out, line)
		}
	}
	return out
}

func portRange(r mesh.PortRange) string {
	if r.First == r.Last {
		return strconv.FormatUint(uint64(r.First), 10)
	}
	return strconv.FormatUint(uint64(r.First), 10) + ":" + strconv.FormatUint(uint64(r.Last), 10)
}

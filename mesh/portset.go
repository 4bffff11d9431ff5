package mesh

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// PortRange is an inclusive range of port numbers.
type PortRange struct {
	First, Last uint32
}

// PortSet is a parsed port-list annotation: numbers, ranges and (where
// allowed) port names. Ranges are kept as ranges for the iptables rules of
// the planned injector, which take ranges; the model stores expanded lists.
type PortSet struct {
	Ranges []PortRange
	// Names are container (or service) port names; they match a port by its
	// name, never by number.
	Names []string
}

// ParsePortSet parses "25,587,4000-4100[,name]". Entries are trimmed; an
// empty string is the empty set, which is how an object says "none" and so
// overrides what its namespace or the defaults would say. Names are accepted
// only when allowNames is set (iptables skip lists cannot resolve names).
func ParsePortSet(s string, allowNames bool) (PortSet, error) {
	var set PortSet
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for i, raw := range strings.Split(s, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			return PortSet{}, fmt.Errorf("entry %d is empty", i+1)
		}
		if first, last, isRange := strings.Cut(entry, "-"); isRange && isDigits(first) {
			lo, err := parsePortNumber(first)
			if err != nil {
				return PortSet{}, fmt.Errorf("range %q: %w", entry, err)
			}
			hi, err := parsePortNumber(last)
			if err != nil {
				return PortSet{}, fmt.Errorf("range %q: %w", entry, err)
			}
			if lo > hi {
				return PortSet{}, fmt.Errorf("range %q: first port is greater than last", entry)
			}
			set.Ranges = append(set.Ranges, PortRange{First: lo, Last: hi})
			continue
		}
		if isDigits(entry) {
			p, err := parsePortNumber(entry)
			if err != nil {
				return PortSet{}, err
			}
			set.Ranges = append(set.Ranges, PortRange{First: p, Last: p})
			continue
		}
		if !allowNames {
			return PortSet{}, fmt.Errorf("%q is not a port number or range", entry)
		}
		if errs := validation.IsValidPortName(entry); len(errs) > 0 {
			return PortSet{}, fmt.Errorf("%q is neither a port number, a range nor a valid port name: %s", entry, strings.Join(errs, "; "))
		}
		set.Names = append(set.Names, entry)
	}
	return set, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func parsePortNumber(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number in 1..65535", s)
	}
	return uint32(n), nil
}

// Contains reports whether port is in one of the ranges.
func (s PortSet) Contains(port uint32) bool {
	for _, r := range s.Ranges {
		if port >= r.First && port <= r.Last {
			return true
		}
	}
	return false
}

// ContainsPort reports whether a port with this name and number is in the
// set, by number or by name.
func (s PortSet) ContainsPort(name string, port uint32) bool {
	return s.Contains(port) || (name != "" && slices.Contains(s.Names, name))
}

// Ports expands the ranges into a sorted list without duplicates.
func (s PortSet) Ports() []uint32 {
	var out []uint32
	for _, r := range s.Ranges {
		for p := r.First; p <= r.Last; p++ {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

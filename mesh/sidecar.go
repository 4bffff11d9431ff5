package mesh

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// SidecarSettings are a pod's sidecar annotations, parsed. A nil or empty
// field was not set (or was malformed): the injector's default applies.
type SidecarSettings struct {
	SkipInboundPorts  *PortSet
	SkipOutboundPorts *PortSet
	SkipSubnets       []netip.Prefix
	CPURequest        *resource.Quantity
	CPULimit          *resource.Quantity
	MemoryRequest     *resource.Quantity
	MemoryLimit       *resource.Quantity
	LogLevel          string
	Image             string
	Version           string
}

// EnvoyLogLevels are the values Envoy's --log-level takes.
var EnvoyLogLevels = []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}

// imageTag is the grammar of an image tag (the distribution reference's).
var imageTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// SidecarSettingsFromPod reads the sidecar annotations of a pod, each the
// pod's, else its namespace's (ns may be nil), with the same rule as every
// other pod annotation. Each malformed annotation is an error in the list
// naming the annotation and its value, and leaves its field unset, so the
// caller can go on with the default for that field alone.
func SidecarSettingsFromPod(pod *corev1.Pod, ns *corev1.Namespace) (SidecarSettings, field.ErrorList) {
	var s SidecarSettings
	_, skipIn, skipOut, errs := podPortLists(pod, ns)
	s.SkipInboundPorts, s.SkipOutboundPorts = skipIn, skipOut
	read := func(dst any, names ...string) {
		// dst is written only by a successful parse, and the namespace is
		// parsed only when the pod has no value: dst ends with the winner or
		// unset.
		_, err := podOrNamespace(pod, ns, func(annotations map[string]string) (struct{}, bool, *field.Error) {
			value, name, ok := annotationWithFallback(annotations, names...)
			if !ok {
				return struct{}{}, false, nil
			}
			if err := parseSidecarValue(dst, value); err != nil {
				return struct{}{}, true, field.Invalid(annotationsPath.Key(name), value, err.Error())
			}
			return struct{}{}, true, nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	read(&s.SkipSubnets, AnnotationSkipSubnets, LinkerdAnnotationSkipSubnets)
	read(&s.CPURequest, AnnotationProxyCPURequest, LinkerdAnnotationProxyCPURequest)
	read(&s.CPULimit, AnnotationProxyCPULimit, LinkerdAnnotationProxyCPULimit)
	read(&s.MemoryRequest, AnnotationProxyMemoryRequest, LinkerdAnnotationProxyMemoryRequest)
	read(&s.MemoryLimit, AnnotationProxyMemoryLimit, LinkerdAnnotationProxyMemoryLimit)
	read(&s.LogLevel, AnnotationProxyLogLevel, LinkerdAnnotationProxyLogLevel)
	read((*imageRef)(&s.Image), AnnotationProxyImage)
	read((*imageTagValue)(&s.Version), AnnotationProxyVersion)
	return s, errs
}

type (
	imageRef      string
	imageTagValue string
)

// parseSidecarValue parses value into dst by dst's type; on error dst is
// left as it was.
func parseSidecarValue(dst any, value string) error {
	value = strings.TrimSpace(value)
	switch d := dst.(type) {
	case *[]netip.Prefix:
		var out []netip.Prefix
		for i, raw := range strings.Split(value, ",") {
			entry := strings.TrimSpace(raw)
			if entry == "" {
				return fmt.Errorf("entry %d is empty", i+1)
			}
			p, err := netip.ParsePrefix(entry)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR", entry)
			}
			out = append(out, p.Masked())
		}
		*d = out
	case **resource.Quantity:
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return fmt.Errorf("not a quantity: %w", err)
		}
		if q.Sign() <= 0 {
			return fmt.Errorf("must be greater than zero")
		}
		*d = &q
	case *string: // the log level
		level, _, _ := strings.Cut(value, ",")
		level = strings.ToLower(strings.TrimSpace(level))
		if !slices.Contains(EnvoyLogLevels, level) {
			return fmt.Errorf("not one of %s", strings.Join(EnvoyLogLevels, ", "))
		}
		*d = level
	case *imageRef:
		if value == "" || strings.ContainsAny(value, " \t\n@") {
			return fmt.Errorf("not an image name")
		}
		*d = imageRef(value)
	case *imageTagValue:
		if !imageTag.MatchString(value) {
			return fmt.Errorf("not an image tag")
		}
		*d = imageTagValue(value)
	default:
		panic("parseSidecarValue: unhandled type " + strconv.Quote(fmt.Sprintf("%T", dst)))
	}
	return nil
}

// String formats the ranges in the annotation syntax ("25,4000-4100");
// names are left out (iptables lists cannot resolve them).
func (s PortSet) String() string {
	parts := make([]string, 0, len(s.Ranges))
	for _, r := range s.Ranges {
		if r.First == r.Last {
			parts = append(parts, strconv.FormatUint(uint64(r.First), 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.First, r.Last))
		}
	}
	return strings.Join(parts, ",")
}

package injector

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/mesh"
)

// TestInjectorAndMeshAgreeOnAnnotations feeds one pod to both readers of its
// annotations: the capture rules the injector writes redirect exactly the
// ports the control plane's proxy serves (a malformed list means no skip in
// both, not the namespace's list), and what the control plane reports about
// the port lists the admission warned about in the same words.
func TestInjectorAndMeshAgreeOnAnnotations(t *testing.T) {
	in := testInjector(t)
	tests := []struct {
		name          string
		podAnn, nsAnn map[string]string
		wantErrs      int // annotation errors both report
	}{
		{name: "valid lists", podAnn: map[string]string{mesh.AnnotationSkipInboundPorts: "9100"}, nsAnn: map[string]string{mesh.AnnotationSkipOutboundPorts: "25,4000-4002"}},
		{name: "malformed pod skip-inbound, valid namespace one", podAnn: map[string]string{mesh.AnnotationSkipInboundPorts: "abc"}, nsAnn: map[string]string{mesh.AnnotationSkipInboundPorts: "9100"}, wantErrs: 1},
		{name: "malformed namespace skip-inbound inherited", nsAnn: map[string]string{mesh.AnnotationSkipInboundPorts: "0"}, wantErrs: 1},
		{name: "one list malformed, the other applied", podAnn: map[string]string{mesh.AnnotationSkipInboundPorts: "9100", mesh.LinkerdAnnotationSkipOutboundPorts: "443,https"}, wantErrs: 1},
		{name: "malformed opaque list", podAnn: map[string]string{mesh.AnnotationOpaquePorts: "80-70", mesh.AnnotationSkipInboundPorts: "8080"}, wantErrs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod("app", tt.podAnn, func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 9100})
			})
			nsAnn := map[string]string{mesh.AnnotationInject: mesh.InjectEnabled}
			maps.Copy(nsAnn, tt.nsAnn)
			ns := namespace("app", nsAnn, nil)

			res, warnings := in.Inject(pod, ns)
			if res.Pod == nil {
				t.Fatalf("not injected: %s", res.Skipped)
			}
			px, errs := mesh.ProxyFromPod(pod, ns)
			if len(errs) != tt.wantErrs {
				t.Fatalf("mesh reports %v, want %d errors", errs, tt.wantErrs)
			}
			for _, e := range errs {
				if !slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, e.Error()) }) {
					t.Errorf("mesh reports %q; the admission warned only %q", e.Error(), warnings)
				}
			}

			capture := res.Pod.Spec.InitContainers[0]
			skipped := func(flag string) []uint32 {
				arg := argAfter(capture.Args, flag)
				if arg == "" {
					return nil
				}
				set, err := mesh.ParsePortSet(arg, false)
				if err != nil {
					t.Fatalf("capture %s %q: %v", flag, arg, err)
				}
				return set.Ports()
			}
			if got := skipped("--skip-inbound-ports"); !slices.Equal(got, px.SkipInboundPorts) {
				t.Errorf("capture skips inbound %v, the proxy %v", got, px.SkipInboundPorts)
			}
			if got := skipped("--skip-outbound-ports"); !slices.Equal(got, px.SkipOutboundPorts) {
				t.Errorf("capture skips outbound %v, the proxy %v", got, px.SkipOutboundPorts)
			}
			// Every app port is either redirected and served or skipped and not.
			for _, port := range []uint32{8080, 9100} {
				served := slices.ContainsFunc(px.InboundPorts, func(p mesh.ProxyPort) bool { return p.Port == port })
				if redirected := !slices.Contains(skipped("--skip-inbound-ports"), port); served != redirected {
					t.Errorf("port %d: redirected %v, served by the proxy %v", port, redirected, served)
				}
			}
		})
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/cmd/weft/proxyconfig"
	"github.com/weftmesh/weft/mesh"
	"github.com/weftmesh/weft/profiles"
	"github.com/weftmesh/weft/profiles/admission"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/translate"
)

func newProfileExplainCommand() *cobra.Command {
	var (
		clusterDomain, output string
		port                  int32
	)
	cmd := &cobra.Command{
		Use:   "explain FILE...",
		Short: "Say, route by route, what a sidecar will do with the requests a ServiceProfile describes",
		Long: `explain reads ServiceProfiles, TrafficSplits and Services from YAML or JSON files
(- is stdin), translates them exactly as the control plane does, and says for every
service port what a client's Envoy sidecar does with a request, route by route in the
order they are tried: the match, the timeout, the retries, which responses count as
failures, where the request goes (the split), and the retry budget.

A client is a sidecar in the profile's namespace (for a TrafficSplit, the split's). A
Service not in the files is assumed to have one HTTP port (--port), or for a backend the
ports of its apex service. The files are validated first, as by validate; with any
error nothing is explained.

-o envoy prints the generated RouteConfigurations as YAML instead.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "envoy" {
				return fmt.Errorf("-o %q: want text or envoy", output)
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("--port %d: want a port number in 1..65535", port)
			}
			docs, err := readManifestFiles(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if t := reportProblems(cmd.ErrOrStderr(), docs, admission.Validator{ClusterDomain: clusterDomain}); t.invalid > 0 {
				return fmt.Errorf("%d of %d objects invalid; nothing explained", t.invalid, t.checked())
			}
			in, err := readExplainInputs(docs, clusterDomain, port)
			if err != nil {
				return err
			}
			if len(in.subjects) == 0 {
				return errors.New("no ServiceProfile or TrafficSplit to explain")
			}
			var out bytes.Buffer
			if err := in.explain(&out, output == "envoy"); err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out.Bytes())
			return err
		},
	}
	cmd.Flags().StringVar(&clusterDomain, "cluster-domain", translate.DefaultClusterDomain, "the cluster's DNS domain, the suffix of profile names")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text, or envoy for the RouteConfigurations as YAML")
	cmd.Flags().Int32Var(&port, "port", 80, "the HTTP port of a service the files do not define")
	return cmd
}

// explainSubject is a service as clients of one namespace see it.
type explainSubject struct {
	svc      mesh.ServiceKey
	clientNS string
}

type explainInputs struct {
	domain   string
	objects  mesh.Objects
	subjects []explainSubject
	// assumed are the services made up because the files lack them.
	assumed []string
}

// readExplainInputs decodes the documents (already validated) and makes up
// the services they name but do not define.
func readExplainInputs(docs []manifestDocument, domain string, port int32) (*explainInputs, error) {
	in := &explainInputs{domain: domain}
	services := map[mesh.ServiceKey]*corev1.Service{}
	var needed []mesh.ServiceKey
	// backends maps a needed backend to the service whose ports it takes,
	// and the port a dstOverrides authority names.
	type backendOf struct {
		apex mesh.ServiceKey
		port uint32
	}
	backends := map[mesh.ServiceKey]backendOf{}
	subject := func(s explainSubject) {
		if !slices.Contains(in.subjects, s) {
			in.subjects = append(in.subjects, s)
		}
		needed = append(needed, s.svc)
	}
	for _, d := range docs {
		var head metav1.TypeMeta
		if err := json.Unmarshal(d.json, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", d.where(), err)
		}
		switch head.Kind {
		case "ServiceProfile":
			sp, err := profiles.DecodeServiceProfile(d.json)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.where(), err)
			}
			name, ns, _ := profiles.ParseProfileName(sp.Name, domain)
			svc := mesh.ServiceKey{Namespace: ns, Name: name}
			if sp.Namespace == "" {
				sp.Namespace = ns
			}
			in.objects.ServiceProfiles = append(in.objects.ServiceProfiles, sp)
			subject(explainSubject{svc: svc, clientNS: sp.Namespace})
			for _, o := range sp.Spec.DstOverrides {
				bname, bns, bport, _ := profiles.ParseAuthority(o.Authority, domain)
				b := mesh.ServiceKey{Namespace: bns, Name: bname}
				backends[b] = backendOf{apex: svc, port: bport}
				needed = append(needed, b)
			}
		case "TrafficSplit":
			ts, err := profiles.DecodeTrafficSplit(d.json)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.where(), err)
			}
			if ts.Namespace == "" {
				ts.Namespace = metav1.NamespaceDefault
			}
			in.objects.TrafficSplits = append(in.objects.TrafficSplits, ts)
			apex := mesh.ServiceKey{Namespace: ts.Namespace, Name: ts.Service}
			subject(explainSubject{svc: apex, clientNS: ts.Namespace})
			for _, b := range ts.Backends {
				k := mesh.ServiceKey{Namespace: ts.Namespace, Name: b.Service}
				backends[k] = backendOf{apex: apex}
				needed = append(needed, k)
			}
		case "Service":
			if head.APIVersion != "v1" {
				continue
			}
			var svc corev1.Service
			strict, err := sigsjson.UnmarshalStrict(d.json, &svc)
			if err = errors.Join(append([]error{err}, strict...)...); err != nil {
				return nil, fmt.Errorf("%s (Service %s): %w", d.where(), svc.Name, err)
			}
			if svc.Namespace == "" {
				svc.Namespace = metav1.NamespaceDefault
			}
			services[mesh.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}] = &svc
		}
	}
	for _, k := range needed {
		if services[k] != nil {
			continue
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
		b, isBackend := backends[k]
		switch apex := services[b.apex]; {
		case isBackend && apex != nil:
			svc.Spec.Ports = slices.Clone(apex.Spec.Ports)
			in.assumed = append(in.assumed, fmt.Sprintf("Service %s: not in the files; assumed to have the ports of %s", k, b.apex))
		default:
			svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: port}}
			in.assumed = append(in.assumed, fmt.Sprintf("Service %s: not in the files; assumed to have one HTTP port, %d", k, port))
		}
		if b.port != 0 && !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return uint32(p.Port) == b.port }) {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("http-%d", b.port), Port: int32(b.port)})
		}
		services[k] = svc
	}
	for _, svc := range services {
		in.objects.Services = append(in.objects.Services, svc)
	}
	return in, nil
}

// explain translates for a sidecar in each subject's client namespace and
// writes what it is served for the subject's service.
func (in *explainInputs) explain(w io.Writer, envoy bool) error {
	m, buildErrs := mesh.Build(in.domain, in.objects)
	tr := translate.NewTranslator(translate.Options{ClusterDomain: in.domain})
	var problems []string
	for _, e := range buildErrs {
		problems = append(problems, e.Error())
	}
	resources := map[string]*translate.Resources{}
	for _, s := range in.subjects {
		if resources[s.clientNS] != nil {
			continue
		}
		res, errs := tr.ForProxy(m, &mesh.Proxy{Kind: proxy.Envoy, Pod: "explain", Namespace: s.clientNS})
		resources[s.clientNS] = res
		for _, e := range errs {
			if !slices.Contains(problems, e.Error()) {
				problems = append(problems, e.Error())
			}
		}
	}
	if envoy {
		var rcs []*routev3.RouteConfiguration
		for _, s := range in.subjects {
			rcs = append(rcs, routesOf(resources[s.clientNS], m.Services[s.svc], in.domain)...)
		}
		return writeEnvoyYAML(w, rcs)
	}
	for _, a := range in.assumed {
		fmt.Fprintf(w, "note: %s\n", a)
	}
	for _, p := range problems {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
	for _, s := range in.subjects {
		svc := m.Services[s.svc]
		res := resources[s.clientNS]
		fmt.Fprintf(w, "\nService %s, for a sidecar in namespace %s\n", s.svc, s.clientNS)
		if p, _ := m.ProfileFor(s.clientNS, s.svc); p != nil {
			fmt.Fprintf(w, "  profile: ServiceProfile %s/%s\n", p.Source.Namespace, p.Source.Name)
		} else {
			fmt.Fprintln(w, "  profile: none (no timeouts, no retries)")
		}
		if split := m.Splits[s.svc]; split != nil {
			fmt.Fprintf(w, "  split: TrafficSplit %s/%s\n", split.Source.Namespace, split.Source.Name)
		}
		for _, sp := range svc.Ports {
			name := translate.OutboundRouteName(s.svc, sp.Port, in.domain)
			fmt.Fprintf(w, "port %d (%s): route configuration %s\n", sp.Port, sp.Protocol, name)
			i := slices.IndexFunc(res.Routes, func(rc *routev3.RouteConfiguration) bool { return rc.GetName() == name })
			if i < 0 {
				fmt.Fprintln(w, "  no routes: the port is opaque (TCP, no HTTP routing)")
				continue
			}
			proxyconfig.Explain(w, res.Routes[i], res.Clusters, proxyconfig.ExplainOptions{GRPC: sp.Protocol == mesh.ProtocolGRPC})
		}
	}
	return nil
}

func routesOf(res *translate.Resources, svc *mesh.Service, domain string) []*routev3.RouteConfiguration {
	var out []*routev3.RouteConfiguration
	for _, sp := range svc.Ports {
		name := translate.OutboundRouteName(svc.Key, sp.Port, domain)
		for _, rc := range res.Routes {
			if rc.GetName() == name {
				out = append(out, rc)
			}
		}
	}
	return out
}

// writeEnvoyYAML prints resources as a YAML list, with Envoy's field names
// (protojson), as translate's golden files are written.
func writeEnvoyYAML(w io.Writer, rcs []*routev3.RouteConfiguration) error {
	list := make([]any, 0, len(rcs))
	for _, rc := range rcs {
		js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(rc)
		if err != nil {
			return fmt.Errorf("encoding route configuration %s: %w", rc.GetName(), err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			return fmt.Errorf("encoding route configuration %s: %w", rc.GetName(), err)
		}
		list = append(list, v)
	}
	y, err := yaml.Marshal(list)
	if err != nil {
		return fmt.Errorf("encoding route configurations: %w", err)
	}
	_, err = w.Write(y)
	return err
}

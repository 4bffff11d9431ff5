package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// summary is a namespace's deployments, pods, services and endpoint slices, read once.
type summary struct {
	namespace   string
	deployments []appsv1.Deployment
	pods        []corev1.Pod
	services    []corev1.Service
	slices      []discoveryv1.EndpointSlice
}

func collect(ctx context.Context, c kubernetes.Interface, ns string) (*summary, error) {
	deps, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing deployments in %s: %w", ns, err)
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", ns, err)
	}
	svcs, err := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing services in %s: %w", ns, err)
	}
	eps, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing endpoint slices in %s: %w", ns, err)
	}
	s := &summary{namespace: ns, deployments: deps.Items, pods: pods.Items, services: svcs.Items, slices: eps.Items}
	slices.SortFunc(s.pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.services, func(a, b corev1.Service) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

// settled reports whether every Deployment has all its replicas ready, every pod runs with an
// IP, and every selecting Service has a ready endpoint for each of its pods; otherwise why not.
// Deployments come first: before their controller has acted, there are no pods to wait for.
func (s *summary) settled() (bool, error) {
	if len(s.deployments) == 0 {
		return false, fmt.Errorf("no deployments in %s yet", s.namespace)
	}
	want := 0
	for _, d := range s.deployments {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.ReadyReplicas != replicas || d.Status.Replicas != replicas {
			return false, fmt.Errorf("deployment %s has %d of %d replicas ready", d.Name, d.Status.ReadyReplicas, replicas)
		}
		want += int(replicas)
	}
	if len(s.pods) != want {
		return false, fmt.Errorf("%d pods in %s, want %d", len(s.pods), s.namespace, want)
	}
	for _, p := range s.pods {
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return false, fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
	}
	for _, svc := range s.services {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		want := len(s.podsOf(&svc))
		if want == 0 {
			return false, fmt.Errorf("service %s selects no pod", svc.Name)
		}
		if got := len(s.readyEndpoints(svc.Name)); got != want {
			return false, fmt.Errorf("service %s has %d of %d endpoints ready", svc.Name, got, want)
		}
	}
	return true, nil
}

func (s *summary) podsOf(svc *corev1.Service) []corev1.Pod {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []corev1.Pod
	for _, p := range s.pods {
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

func (s *summary) slicesOf(service string) []discoveryv1.EndpointSlice {
	var out []discoveryv1.EndpointSlice
	for _, sl := range s.slices {
		if sl.Labels[discoveryv1.LabelServiceName] == service {
			out = append(out, sl)
		}
	}
	return out
}

func (s *summary) readyEndpoints(service string) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, sl := range s.slicesOf(service) {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				out = append(out, ep)
			}
		}
	}
	return out
}

// write prints the pods, then each Service with its ports and the endpoints behind them.
func (s *summary) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\n    Pods in %s\n", s.namespace)
	fmt.Fprintln(tw, "    NAME\tPHASE\tPOD IP\tSERVICE ACCOUNT\tNODE")
	for _, p := range s.pods {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", p.Name, p.Status.Phase, p.Status.PodIP, p.Spec.ServiceAccountName, p.Spec.NodeName)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\n    Services in %s, with their EndpointSlices\n", s.namespace)
	podByIP := map[string]string{}
	for _, p := range s.pods {
		podByIP[p.Status.PodIP] = p.Name
	}
	for _, svc := range s.services {
		fmt.Fprintf(w, "    %s  %s  %s\n", svc.Name, svc.Spec.ClusterIP, describePorts(svc.Spec.Ports))
		for _, sl := range s.slicesOf(svc.Name) {
			fmt.Fprintf(w, "      slice %s (ports %s)\n", sl.Name, describeSlicePorts(sl.Ports))
			for _, ep := range sl.Endpoints {
				ready := ep.Conditions.Ready != nil && *ep.Conditions.Ready
				for _, a := range ep.Addresses {
					zone := ""
					if ep.Zone != nil {
						zone = " zone " + *ep.Zone
					}
					fmt.Fprintf(w, "        %-15s ready=%-5v pod %s%s\n", a, ready, podByIP[a], zone)
				}
			}
		}
	}
	return nil
}

func describePorts(ports []corev1.ServicePort) string {
	var parts []string
	for _, p := range ports {
		s := fmt.Sprintf("%s %d->%s", p.Name, p.Port, p.TargetPort.String())
		if p.AppProtocol != nil {
			s += " (appProtocol " + *p.AppProtocol + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func describeSlicePorts(ports []discoveryv1.EndpointPort) string {
	var parts []string
	for _, p := range ports {
		name, port := "", int32(0)
		if p.Name != nil {
			name = *p.Name
		}
		if p.Port != nil {
			port = *p.Port
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, port))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

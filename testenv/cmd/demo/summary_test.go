package main

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSettled(t *testing.T) {
	deploy := func(name string, replicas, ready int32) appsv1.Deployment {
		return appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: ready, ReadyReplicas: ready},
		}
	}
	pod := func(name, app string, phase corev1.PodPhase, ip string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
			Status:     corev1.PodStatus{Phase: phase, PodIP: ip},
		}
	}
	svc := func(name, app string) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app}}}
	}
	slice := func(service string, ready ...string) discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: service + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: service}}}
		yes := true
		for _, ip := range ready {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}})
		}
		return s
	}
	tests := []struct {
		name    string
		s       summary
		wantErr string // empty: settled
	}{
		{
			name: "all running and served",
			s: summary{
				deployments: []appsv1.Deployment{deploy("web", 1, 1), deploy("emoji", 2, 2)},
				pods:        []corev1.Pod{pod("web-1", "web", corev1.PodRunning, "10.244.0.1"), pod("emoji-1", "emoji", corev1.PodRunning, "10.244.0.2"), pod("emoji-2", "emoji", corev1.PodRunning, "10.244.0.3")},
				services:    []corev1.Service{svc("web-svc", "web"), svc("emoji-svc", "emoji")},
				slices:      []discoveryv1.EndpointSlice{slice("web-svc", "10.244.0.1"), slice("emoji-svc", "10.244.0.2", "10.244.0.3")},
			},
		},
		{
			// The case that made the demo flaky: the other pods ran before web's existed.
			name: "a deployment without pods yet",
			s: summary{
				deployments: []appsv1.Deployment{deploy("web", 1, 0), deploy("emoji", 1, 1)},
				pods:        []corev1.Pod{pod("emoji-1", "emoji", corev1.PodRunning, "10.244.0.2")},
				services:    []corev1.Service{svc("web-svc", "web"), svc("emoji-svc", "emoji")},
				slices:      []discoveryv1.EndpointSlice{slice("web-svc"), slice("emoji-svc", "10.244.0.2")},
			},
			wantErr: "deployment web has 0 of 1 replicas ready",
		},
		{
			name:    "nothing applied yet",
			s:       summary{},
			wantErr: "no deployments",
		},
		{
			name: "endpoint not ready yet",
			s: summary{
				deployments: []appsv1.Deployment{deploy("web", 1, 1)},
				pods:        []corev1.Pod{pod("web-1", "web", corev1.PodRunning, "10.244.0.1")},
				services:    []corev1.Service{svc("web-svc", "web")},
				slices:      []discoveryv1.EndpointSlice{slice("web-svc")},
			},
			wantErr: "service web-svc has 0 of 1 endpoints ready",
		},
		{
			name: "a pod still pending",
			s: summary{
				deployments: []appsv1.Deployment{deploy("web", 1, 1)},
				pods:        []corev1.Pod{pod("web-1", "web", corev1.PodPending, "")},
			},
			wantErr: "pod web-1 is Pending",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := tt.s.settled()
			if tt.wantErr == "" {
				if !ok {
					t.Fatalf("not settled: %v", err)
				}
				return
			}
			if ok || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("settled = %v, %v; want not settled because %q", ok, err, tt.wantErr)
			}
		})
	}
}

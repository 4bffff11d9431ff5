package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

// kwokNodeAnnotation is the annotation kwok is told to manage nodes by; nodes without it
// are left alone, so a test can add a node kwok must not touch.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// Zone and Region label the fake node, so EndpointSlices carry a zone (grpc-go needs a
// locality on every endpoint group).
const (
	Zone   = "testenv-zone-a"
	Region = "testenv-region"
)

// writeKwokStages writes the stage definitions shipped with the kwok module that is pinned in
// go.mod: nodes become Ready and keep heartbeating, pods become Running with an IP and are
// removed when deleted. kwok refuses to start without stages.
func writeKwokStages(path string) error {
	stages := []string{
		nodefast.DefaultNodeInit,
		nodeheartbeat.DefaultNodeHeartbeat,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	var b strings.Builder
	for _, s := range stages {
		b.WriteString("---\n")
		b.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			b.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("writing kwok stages: %w", err)
	}
	return nil
}

// createNode registers the fake node that kwok will mark Ready and run pods on. It carries
// no taint, so ordinary workloads schedule on it without tolerations.
func (e *Env) createNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        e.NodeName,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname":        e.NodeName,
				"kubernetes.io/os":              "linux",
				"kubernetes.io/arch":            "amd64",
				"type":                          "kwok",
				"topology.kubernetes.io/zone":   Zone,
				"topology.kubernetes.io/region": Region,
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: e.PodCIDR, PodCIDRs: []string{e.PodCIDR}},
	}
	_, err := e.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating kwok node %s: %w", e.NodeName, err)
	}
	return nil
}

func (e *Env) nodeReady(ctx context.Context) (bool, error) {
	node, err := e.Clientset.CoreV1().Nodes().Get(ctx, e.NodeName, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, nil
			}
			return false, fmt.Errorf("node %s Ready=%s", e.NodeName, c.Status)
		}
	}
	return false, fmt.Errorf("node %s has no Ready condition yet", e.NodeName)
}

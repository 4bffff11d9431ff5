package testenv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RunningPods waits until the pods in ns matching selector are exactly n, all Running with
// an IP (kwok's doing) and none being deleted, and returns them sorted by name.
func (e *Env) RunningPods(ctx context.Context, timeout time.Duration, ns, selector string, n int) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := e.WaitFor(ctx, timeout, fmt.Sprintf("%d running pods %s in %s", n, selector, ns), func(ctx context.Context) (bool, error) {
		list, err := e.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		return len(pods) == n && len(list.Items) == n, nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return pods, nil
}

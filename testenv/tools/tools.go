//go:build tools

// Package tools pins the Kubernetes control-plane binaries that testenv runs.
// It is a separate module so that k8s.io/kubernetes and its staging replaces
// never leak into Weft's own module graph.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)

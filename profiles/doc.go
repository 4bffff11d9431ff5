// Package profiles owns the API types Weft reads from Kubernetes and their
// validation: Linkerd's ServiceProfile (linkerd.io/v1alpha2, schema and JSON
// names unchanged so a Linkerd user migrates without rewriting a profile) and
// SMI TrafficSplit (split.smi-spec.io v1alpha1 and v1alpha2).
package profiles

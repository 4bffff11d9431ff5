//go:build tools

// Package prometheus pins the Prometheus server that telemetry's tests run against a
// stand-in Envoy. It is its own module so that Prometheus' dependency graph (service
// discovery for every cloud) never enters Weft's.
package prometheus

import _ "github.com/prometheus/prometheus/cmd/prometheus"

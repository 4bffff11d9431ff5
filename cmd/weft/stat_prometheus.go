package main

import (
	"github.com/spf13/pflag"

	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/promsource"
)

// prometheusFlags are the flags that send a telemetry command (stat, routes) to a
// Prometheus instead of the control plane's embedded window.
type prometheusFlags struct {
	url           string
	clusterDomain string
}

// addPrometheusFlags registers --prometheus and --cluster-domain on a telemetry command.
func addPrometheusFlags(fs *pflag.FlagSet) *prometheusFlags {
	p := &prometheusFlags{}
	fs.StringVar(&p.url, "prometheus", "", "ask this Prometheus (http://prometheus:9090), which scrapes every proxy's /stats/prometheus, instead of the control plane")
	fs.StringVar(&p.clusterDomain, "cluster-domain", "cluster.local", "the Kubernetes cluster domain in the proxies' cluster names (with --prometheus)")
	return p
}

// source is the Prometheus Source when --prometheus was given, else embedded.
func (p *prometheusFlags) source(embedded telemetry.Source) (telemetry.Source, error) {
	if p.url == "" {
		return embedded, nil
	}
	return promsource.New(p.url, p.clusterDomain)
}

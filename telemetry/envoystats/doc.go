// Package envoystats derives, without an Envoy, the Prometheus series one Weft sidecar
// exposes on /stats/prometheus: it enumerates the stats stock Envoy (1.40, the
// go-control-plane envoy module in go.mod) creates for the configuration Weft gives the
// proxy (the bootstrap of injector/bootstrap and the listeners, routes and clusters of
// translate), then applies the bootstrap's own stats_config as Envoy does (the inclusion
// matcher, then the tag rules) and names what is left as Envoy's Prometheus formatter does.
//
// It exists to measure the series budget per proxy on the Prometheus path (docs/
// prometheus-and-dashboards.md): `go test -bench SeriesPerProxy ./telemetry/envoystats`.
//
// There is no Envoy here: this is a stand-in. What it knows of Envoy is in one table
// (families.go), each row citing the Envoy source file and macro its stat names come
// from; the rules it applies (config.go, prometheus.go) cite the Envoy source they follow.
// The names were read from envoyproxy/envoy's source as a public code index holds it
// (recent main-branch files; a v1.40 checkout was too large to fetch here). Only the
// stats the bootstrap's matcher keeps change a count, and those names (upstream_rq_*,
// downstream_rq_*, downstream_cx_*, ssl.handshake) have been stable for many releases;
// the rest give the stats/proxy figure, the size before the matcher.
package envoystats

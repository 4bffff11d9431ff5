// Package translate turns the mesh model into Envoy resources for one proxy:
// pure functions of a *mesh.Model and a *mesh.Proxy, no Kubernetes clients,
// no I/O. The xds package serves what it returns.
//
// # What a sidecar gets
//
//   - Listener "outbound" on mesh.ProxyOutboundPort: every connection the
//     app opens (iptables redirects it). original_dst restores where it was
//     going; a filter chain per known destination matches that address —
//     per service port, all its cluster IPs (/32, /128) and the port; for a
//     headless service, one chain per endpoint address:port. On HTTP ports
//     http_inspector tells HTTP from the rest: HTTP goes to an HTTP
//     connection manager (routes over RDS), the rest to tcp_proxy on the
//     same cluster. Opaque ports get tcp_proxy only and no detection.
//     Anything else passes through to its original destination (the default
//     chain, cluster "passthrough"). Ports the pod skips never reach the
//     proxy and have no chain.
//   - Listener "inbound" on mesh.ProxyInboundPort: per declared port an HTTP
//     chain (plaintext HTTP found by http_inspector) and a TCP chain, both
//     to the static cluster "inbound|<port>" (127.0.0.1:<port>); opaque
//     ports TCP only. Detection runs only where an HTTP chain exists,
//     bounded by a 10s timeout after which the connection continues as TCP.
//   - Per service port a RouteConfiguration (see below), an EDS cluster and
//     its ClusterLoadAssignment, named outbound|<port>|<svc>.<ns>.svc.<domain>.
//
// # What a proxyless gRPC client gets
//
// API listeners named as grpc-go asks for them (svc.ns:port and
// svc.ns.svc.<domain>:port), each an HTTP connection manager with routes
// over ADS and the router as its only filter; the same clusters and
// endpoints as sidecars; no inbound listener.
//
// # Routes
//
// One virtual host answers every name of the service (short, namespaced,
// FQDN, cluster IPs, with and without port); sidecars also accept any Host,
// since the filter chain, not the Host header, chose the service. A
// ServiceProfile's routes come in order, each expanded into Envoy matches
// (match.go explains the expansion of all/any/not), then a [DEFAULT]
// catch-all. timeout becomes the route timeout (and max_stream_duration for
// grpc-go), isRetryable a retry policy on what the route's response classes
// call failures, responseClasses route metadata (ResponseClassesMetadataKey),
// retryBudget the cluster's retry budget (docs/retry-budgets.md). A TrafficSplit,
// else the profile's dstOverrides, becomes weighted clusters with the
// weights kept exactly. Without a profile there is no timeout (Envoy's 15s
// default is turned off) and no retry.
//
// # Bad input
//
// Nothing panics and nothing bad reaches a proxy: a profile that cannot be
// expressed is skipped as a whole (the service behaves as without it), a
// backend that does not exist is left out, two services claiming one
// address keep the first; each is reported as an error naming the object
// and field path, and everything else is translated as usual.
//
// # mTLS
//
// With a trust domain (Options.TrustDomain; none means off, output
// unchanged), clusters to services whose endpoints are all meshed sidecar
// pods originate mTLS checking the SPIFFE IDs of the ServiceAccounts behind
// them, and the inbound listener terminates mTLS on every port, with the
// plaintext chains kept (permissive) or replaced by one that closes the
// connection (strict). docs/mtls.md says why each choice was made.
//
// # Sharing
//
// See Translator: per-service results are cached by model pointers and
// shared by every proxy they apply to, so a change to one service
// recomputes that service only. What each cached product reads is declared
// once (inputs.go, plus each feature's own declaration): the same
// declaration keys the caches, decides what the sweep keeps, and is
// exported (Translator.Reads) for the controller's dependency index.
//
// # Layout
//
// translator.go is the orchestration (Translator, ForProxy, Endpoints);
// inputs.go the model inputs and what each product reads; cache.go the
// cache engine (lookup, replacement, sweep); view.go a namespace's
// outbound view; outbound.go and inbound.go the two sides, as functions of
// their declared inputs; proxy.go a sidecar's own listeners and lists.
// features.go is the seam where HTTP filters, network filters and
// transport sockets are added to chains and clusters: one file per feature
// (feature_*.go: the router, mTLS) and one ordered table saying why each
// sits where it does.
package translate

// Package xds serves Envoy resources to Envoy sidecars and proxyless gRPC
// clients over ADS, state of the world and delta, on go-control-plane
// v0.14.0's message types and cache interfaces, by stream loops of Weft's
// own: sotw.go for SotW streams, delta.go for delta streams. It knows
// nothing of ServiceProfiles or Kubernetes objects: it serves the
// resources it is given.
//
// # Caches
//
// Listeners, routes, clusters and secrets are per node (SetNodeResources)
// and live in the node cache. Endpoints are shared by every node
// (SetEndpoints) and live in one endpoint cache, so an endpoint change
// bumps no other type and no proxy that does not subscribe to that
// ClusterLoadAssignment. A MuxCache routes requests by type URL (Contour's
// arrangement). Both caches are our own, behind the stream loops (they
// implement go-control-plane's cache.Cache: CreateWatch, CreateDeltaWatch),
// and answer SotW and delta.
//
// Why our own and not go-control-plane's SnapshotCache and LinearCache
// (profiled with the end-to-end benchmark, 500 services, 1,000 proxies):
//   - The SnapshotCache wraps every resource of every response in a fresh
//     entry whose bytes are marshalled on send: v0.14's memoized
//     marshalling lives in that entry, so it is never shared between
//     nodes, and the 1,000 proxies' connect marshalled the same 500
//     clusters 1,000 times (54% of the connect CPU). Sharing the cache's
//     entries was not an option: they are unexported, built per response.
//     Here every resource is marshalled once per content (resourceHashes
//     keeps the bytes in an Any next to the hash, weakly by pointer) and
//     every response of every node carries that same Any; only the
//     envelope is per response. Istio shares marshalled per-service
//     resources across proxies the same way.
//   - The LinearCache re-walked every subscribed name of every watch on a
//     change, and on every ACK re-indexed the watch under each of its
//     names (computeResponse, trackWatch, removeWatch: 75% of a change's
//     CPU with 500 CLAs per proxy). The endpoint cache looks at each open
//     watch only for the names that changed, keeps no index, and checks an
//     ACK only against the names changed since its stream was last known
//     up to date (a generation per stream and a short change log; the
//     whole subscription when that is unknown). What a response changes in
//     the stream's state is applied only when the server sends it: the
//     SotW server drops a queued response when a request of its type
//     arrives first.
//
// Per-node snapshots share whole type sets: proxies with identical views
// (same namespace and kind) get the same typeSet, maps and encodings
// included, so what a proxy adds is its own inbound listener and the
// per-stream state: per stream and type, the subscribed names and what
// was sent, both proportional to the services a proxy sees unless they
// point at sets shared between streams, as below. A delta stream of
// a per-node type (LDS, CDS, RDS) records what it was sent as a pointer to
// the node cache's shared, immutable typeSet it was last sent from (with,
// for a named subscription, the names subscribed since), not a map of its
// own (deltaSub.held). A named delta EDS subscription, once sent its
// first response, records only the endpoint cache's generation it is
// synced at and the names subscribed since (deltaSub.synced): the cache
// keeps, per name, the generation that last changed it, so what a stream
// lacks is what changed after its generation (from the cache's short
// change log, or by walking its names when the log no longer reaches
// back; a removal's entry is forgotten once it leaves the log, and a
// stream synced before that is told of the removal of every absent name
// it subscribes to, which a client ignores for what it does not hold).
//
// A named subscription's names (RDS and EDS, 2,000 each at 2,000
// services; two thirds of the heap at 1,000 delta proxies when kept per
// stream) are an immutable set interned by content (names.go), shared by
// every stream, delta or SotW, that subscribes to exactly those names: the
// proxies of a view. A delta request's subscribe and unsubscribe lists are
// applied as a difference of the stream's own and folded into a shared set
// (found, or made) once the request is applied; a SotW request whose names
// changed is interned whole. The caches read names through their own
// subscription interface (subscribes, subscribed), not
// cachev3.Subscription's map. SotW streams keep a version map per stream
// (the endpoint cache edits it in place); a SotW wildcard stream (LDS,
// CDS) is recorded with one entry for the whole set it was sent. Request
// names are mapped to the server's own strings before they are keyed
// (canonicalNames), so the names are stored once.
//
// # Streams
//
// A SotW request repeats every name the proxy subscribes to (2,000 CLAs
// per proxy at 2,000 services). go-control-plane's sotw server rebuilt the
// stream's subscription set from them on every request, ACKs included:
// with the names' canonicalization, 37% of an endpoint change's CPU at
// 1,000 proxies. Weft's SotW loop (serveSotw) keeps a type's subscription
// while its requests' names hash the same (maphash over the list, in
// order: Envoy's GrpcMuxImpl sends a type's names in one order until they
// change), and keeps go-control-plane's protocol rules otherwise: one watch
// per type; a request whose nonce is not the latest response's of its type
// is stale and ignored (after tracking has seen it); a new request of a
// type cancels its watch and drops that type's queued response; legacy
// wildcard for LDS and CDS only. It runs one goroutine per stream besides
// the one receiving. The server's codec (xdsCodec) leaves a SotW
// request's names encoded, with a hash of them (sotwRequest): an ACK
// repeating its names is never decoded, and changed names are decoded into
// the endpoint cache's strings. Scanning and hashing the names' bytes is
// what is left of such an ACK's cost.
// Weft's delta loop (serveDelta) has the same structure, hooks and
// admission; its protocol rules, and where they differ from
// go-control-plane's delta server (a NACK puts a wildcard stream back on
// the set it acknowledged; nonces are checked), are in delta.go. Delta ACKs
// carry no names, so an ACK costs a new watch and nothing else.
//
// # Rebuilding on a change
//
// A change the controller pushes to every proxy (a profile edit, a new
// namespace) calls SetNodeResources once per node, yet the nodes of a view
// are given the same resource pointers (translate shares them, its lists
// included), so the work is done once per distinct set and each node only
// points at the result. Profiled at 1,000 delta proxies, the per-node work
// was 81% of a profile edit's CPU: 47% the checker, 29% buildSnapshot.
//   - buildSnapshot finds a type's set by the pointers it was built from
//     (typeSets.byInput: a hash of the pointers, confirmed against the
//     set's input), so a node of a view already built costs a pass over
//     its pointers, not an encoding lookup, sort and version hash each.
//   - The default checker's verdict depends only on the peer kind and the
//     content, and equal content means the same shared sets: an accepted
//     snapshot is kept per (kind, sets) (checkedSnapshots) and the next
//     node with the same sets gets it, unchecked. A node whose own
//     resources differ (its inbound listener) has other sets and is
//     checked in full, so what only it has is never let through on a
//     neighbour's verdict; refusals are not kept. A Checker of the
//     caller's runs on every node, as it may judge by node.
//   - A delta stream's diff between the set it holds and the new one is
//     computed once per pair of sets (typeSet.diffFrom) and shared by
//     every stream of the view; a named subscription (RDS) takes the
//     subscribed part of it plus the names subscribed since it was sent,
//     rather than walking its 2,000 names.
//
// What stays per node is the push itself: the node cache answering each
// stream's watches and the write.
//
// # Reconnect storms
//
// At most MaxSyncingStreams (default 32 per CPU) validated streams receive
// their initial configuration at once; the others wait, validated (so the
// controller builds their configuration meanwhile) but not served, until
// one of those has answered (ACK or NACK) the latest response of every
// type it was sent, for 10 s at most (weft_xds_waiting_streams counts
// them). A waiting stream's requests after its first are not read until
// it is admitted (receiveRequests): a reconnecting delta proxy's requests
// list a version per resource it holds, and decoding them ahead for every
// waiting stream raised a 1,000-proxy restart's peak RSS from 1.2 to
// 1.8 GiB. The codec decodes those initial_resource_versions into one
// string per request and a map sized once (decodeDeltaRequest).
// Responses over 1 MiB (a whole CDS or RDS at 2,000 services) are
// marshalled through the server's codec into a free list of at most 16
// buffers rather than gRPC's default pool, whose sync.Pool kept the spent
// buffers of a connect storm for two collections (300 MB of a 960 MB heap
// after 1,000 proxies had connected).
//
// Legacy wildcard is off for EDS, RDS and SDS: an empty request for those
// means "nothing" (Envoy names them), so a proxy dropping its last EDS
// cluster is not sent every CLA of the mesh. LDS and CDS keep it, as Envoy
// subscribes to them with empty names.
//
// # Versions
//
// A node's per-type version is a hash of the sorted (name, SHA-256 of the
// deterministic marshalling) pairs, and delta's per-resource versions are
// those SHA-256s. They depend only on content: two servers, or one
// restarted, give the same versions for the same resources. Hashes are
// cached per resource pointer (weakly: collected resources drop out), and a
// type's maps are shared between nodes with equal content, so 1,000
// proxies with the same clusters cost one hash per cluster and one set of
// maps. Resources handed to the server must therefore never be mutated.
//
// What a reconnect costs: a delta client lists what it holds
// (initial_resource_versions) and gets nothing back but the empty response
// a wildcard subscription needs. The listed versions are the stream's
// until a response replaces them, except that a named subscription whose
// versions are all current (and name nothing else) keeps the node cache's
// set or the endpoint cache's generation instead, as if sent them: 10,000
// proxies reconnecting keep no map of 2,000 names each. A SotW client
// cannot say what it holds; go-control-plane re-sends the resources even
// when the first request carries the current version, with that same
// version. Envoy compares LDS/CDS resources by hash and leaves unchanged
// ones alone, so this costs bandwidth, not drains. EDS versions are
// content hashes too: a CLA's is its SHA-256, and an EDS response's
// version is the hash of the (name, version) pairs it carries.
//
// # Admission
//
// A stream is admitted before it is served: the Authenticator
// (if any) proves an Identity from the stream's context; the first request's
// node.id, "<pod>.<namespace>", goes through the NodeValidator (which
// resolves it to a known pod, or ends the stream with codes.NotFound: "no
// pod web-123 in namespace demo"); the Identity must match that node; and a
// later request may not switch node ids.
//
// # Tracking and metrics
//
// Every response and every ACK/NACK is recorded per node and type (version
// set, sent, ACKed, last NACK): see Proxies, Proxy and DebugHandler.
// NodeConfig, and GET /debug/config/<node>, show what a node is served (its
// last good set and the endpoints its clusters name), private keys redacted
// in the JSON.
// Metrics, registered on Options.Registry:
//
//	weft_xds_connected_proxies              gauge
//	weft_xds_streams                        gauge
//	weft_xds_pushes_total{type}             counter
//	weft_xds_nacks_total{type}              counter
//	weft_xds_proxy_nacks_total{proxy,type}  counter, deleted when the proxy's last stream closes
//	weft_xds_convergence_seconds{type}      histogram: change seen -> ACK of the version carrying it
//	weft_xds_cache_update_seconds{kind}     histogram: snapshot | endpoints
//	weft_xds_rejected_snapshots_total{proxy} counter, deleted by ClearNode
//	weft_xds_rejected_endpoints_total       counter
//	weft_xds_refused_streams_total{code}    counter
//	weft_xds_waiting_streams                gauge: validated, waiting for a syncing slot
//
// Convergence is measured only for proxies connected when the change was
// seen (a proxy's first fetch is start-up, not convergence). An unACKed
// change followed by another keeps the older time, since the newer state of
// the world delivers both; a delta change that produces no response for a
// node (it does not subscribe to what changed) stays pending and is then
// measured from its own time by the next change's ACK, so it can overstate.
package xds

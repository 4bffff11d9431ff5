package xds

import (
	"context"
	"iter"
	"slices"
	"strconv"
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The delta ADS stream is served here rather than by go-control-plane's
// delta server, for what a stream holds. Its per-stream state
// (stream.Subscription) keeps, per type, a map of every name the client
// holds to the version sent; for a wildcard LDS or CDS stream that is a
// copy of the whole set, about 500 KB per proxy at 2,000 services, though
// every proxy of a view holds the same set. Here a wildcard stream of a
// per-node type that holds exactly a set the node cache built points at
// that shared, immutable typeSet (deltaSub.held) and keeps no map; a named
// one (RDS) points at the set it was last sent from, with the names
// subscribed since; a named EDS subscription keeps the endpoint cache's
// generation it is synced at (deltaSub.synced), not a version map.
//
// The protocol is Envoy's delta xDS (NewGrpcMuxImpl and
// DeltaSubscriptionState, source/extensions/config_subscription/grpc/,
// Envoy 1.40) as go-control-plane v0.14 serves it (pkg/server/delta/v3),
// with two differences:
//   - a NACK of a type's latest response puts a wildcard stream back on
//     the set it last acknowledged (what Envoy keeps when it rejects an
//     update), and the refused set is not sent again; the next set built
//     for the node is sent as a change from the acknowledged one.
//   - the request's nonce is checked: only an answer to the latest
//     response of its type counts as an ACK or NACK of the stream's state
//     (tracking sees every answer). Subscription changes apply whatever
//     the nonce: Envoy sends them with the latest nonce it saw, which may
//     be older than a response in flight.
//
// Everything else is go-control-plane's: subscribe and unsubscribe update
// the subscription (`*` subscribes to or leaves the wildcard; an empty
// first request of LDS or CDS is legacy wildcard until the client names
// something); initial_resource_versions on a type's first request are what
// the client holds; queued responses are sent before a request is handled;
// a request replaces its type's watch; removed_resources name what the
// client holds that is gone (the caches compute it); system_version_info
// is the set's version (per-node types) or a hash of what the response
// carries (endpoints).

var deltaStreams atomic.Int64

// deltaSub is a delta stream's subscription of one type. It is a
// cachev3.Subscription for the caches; the node cache reads held (see
// nodeCache.respondDelta) rather than ReturnedResources when it is set.
type deltaSub struct {
	wildcard bool
	// legacy: the stream has named nothing yet and an empty request means
	// wildcard (LDS, CDS).
	legacy bool
	// names are the subscribed names, shared with the streams that
	// subscribe to the same (subNames).
	names subNames
	// returned is what the client holds, name -> version, while held is
	// nil.
	returned map[string]string
	// held, for a per-node type, is the node cache's set the stream was
	// last sent a response from (returned is then nil): the node cache's
	// own typeSet, shared by every stream of every node with the same
	// view. A wildcard stream holds it exactly; a named one holds its
	// version of each subscribed name it has, except those in pending.
	held *typeSet
	// pending are the names subscribed since held was sent, which the
	// client does not hold whatever held says.
	pending map[string]struct{}
	// heldWhole says held was sent to a wildcard stream: the client holds
	// all of it.
	heldWhole bool
	// synced, for a named EDS subscription (returned is then nil), says
	// the client holds the version of every subscribed name as of the
	// endpoint cache's generation syncedGen, but those in pending: the
	// endpoint cache knows what changed since (endpointCache.changedAt).
	synced    bool
	syncedGen uint64
	// acked is the held set the client last acknowledged, and refused the
	// set it last rejected, which is not sent again.
	acked, refused *typeSet
}

var _ cachev3.Subscription = (*deltaSub)(nil)

func newDeltaSub(subscribe, unsubscribe []string, initial map[string]string, legacyWildcard bool) *deltaSub {
	d := &deltaSub{
		legacy:   legacyWildcard,
		wildcard: legacyWildcard && len(subscribe) == 0,
		returned: initial,
	}
	if d.returned == nil {
		d.returned = make(map[string]string)
	}
	// A first request names the whole subscription (Envoy batches a type's
	// names while its mux is paused): intern it as it is.
	d.names = newSubNames(withoutWildcard(subscribe))
	d.update(subscribe, unsubscribe)
	return d
}

func (d *deltaSub) IsWildcard() bool             { return d.wildcard }
func (d *deltaSub) subscribes(name string) bool  { return d.names.has(name) }
func (d *deltaSub) subscribedCount() int         { return d.names.len() }
func (d *deltaSub) subscribed() iter.Seq[string] { return d.names.all() }

// SubscribedResources is for go-control-plane's caches; Weft's read the
// names through subscription, without a map per stream.
func (d *deltaSub) SubscribedResources() map[string]struct{} {
	return namesMap(d.names.all(), d.names.len())
}

// ReturnedResources is what the client holds. With a held set it is built
// from the set: only the endpoint cache calls it, and it never sees a held
// set; the node cache reads held.
func (d *deltaSub) ReturnedResources() map[string]string {
	d.materialize()
	return d.returned
}

// materialize turns a held set into a version map, for the rare changes
// the set cannot express (a name unsubscribed while wildcard, the stream
// entering or leaving the wildcard).
func (d *deltaSub) materialize() {
	if d.held == nil {
		return
	}
	d.returned = make(map[string]string, len(d.held.encoded))
	if d.heldWhole {
		for name, e := range d.held.encoded {
			d.returned[name] = e.hash
		}
	} else {
		for name := range d.names.all() {
			if e := d.holds(name); e != nil {
				d.returned[name] = e.hash
			}
		}
	}
	d.held, d.pending = nil, nil
}

// desync leaves the synced state for a version map: the client is taken
// to hold nothing, and is sent again what it subscribes to.
func (d *deltaSub) desync() {
	d.synced, d.pending, d.returned = false, nil, make(map[string]string)
}

// holds returns the version of name the client holds, if any, when it
// holds a set.
func (d *deltaSub) holds(name string) *encoded {
	if _, pending := d.pending[name]; pending {
		return nil
	}
	return d.held.encoded[name]
}

// update applies a request's subscribe and unsubscribe lists, as
// go-control-plane's stream.Subscription.UpdateResourceSubscriptions does.
func (d *deltaSub) update(subscribe, unsubscribe []string) {
	if d.legacy {
		if len(subscribe) == 0 {
			return
		}
		// Naming anything ends legacy wildcard; the stream stays wildcard
		// until it unsubscribes from "*".
		d.legacy = false
	}
	wasWildcard := d.wildcard
	for _, name := range subscribe {
		if name == "*" {
			d.wildcard = true
			continue
		}
		if d.names.add(name) && (d.held != nil || d.synced) {
			if d.pending == nil {
				d.pending = make(map[string]struct{})
			}
			d.pending[name] = struct{}{}
		}
	}
	for _, name := range unsubscribe {
		if name == "*" {
			d.wildcard = false
			continue
		}
		if d.names.has(name) && d.wildcard {
			// Unsubscribing a name while wildcard: the protocol wants the
			// resource sent again (or reported removed); an empty held
			// version makes the cache do either.
			d.materialize()
			d.returned[name] = ""
		} else if d.returned != nil {
			delete(d.returned, name)
		}
		d.names.remove(name)
		delete(d.pending, name)
	}
	d.names.settle()
	if d.wildcard != wasWildcard {
		if d.synced {
			// A wildcard EDS subscription is served from a version map.
			d.desync()
		}
		// A held set means all of it (wildcard) or only the subscribed
		// names (named): moving between the two goes through the map.
		d.materialize()
	}
}

// sent records a response as sent: the client now holds resp's set (a
// wildcard per-node response) or its version map.
func (d *deltaSub) sent(resp cachev3.DeltaResponse) {
	r, ok := resp.(*deltaResponse)
	if ok && r.set != nil {
		d.held, d.returned, d.refused, d.pending = r.set, nil, nil, nil
		d.heldWhole = d.wildcard
		return
	}
	if ok && r.synced {
		d.synced, d.syncedGen, d.returned, d.pending = true, r.gen, nil, nil
		return
	}
	d.returned = resp.GetNextVersionMap()
	d.held = nil
}

// answered applies the client's answer to the latest response: an ACK
// makes what it holds the acknowledged set; a NACK puts it back on the
// acknowledged set, and the rejected one is not sent again.
func (d *deltaSub) answered(nack bool) {
	if d.held == nil || !d.wildcard {
		// Named subscriptions keep go-control-plane's rule: what was sent
		// is held, and a changed resource is sent again. (Reverting them
		// would also take the names newly subscribed by the refused
		// response as held.)
		return
	}
	if !nack {
		d.acked = d.held
		return
	}
	if d.acked != nil && d.acked != d.held {
		d.refused = d.held
		d.held = d.acked
	}
}

type deltaWatch struct {
	cancel func()
	sub    *deltaSub
	// nonce is that of the latest response sent for the type.
	nonce string
}

// serveDelta serves one admitted delta ADS stream until the client ends it
// (nil), ctx ends (nil: the caller reports ctx's cause), or a request is
// refused (its status).
func (s *Server) serveDelta(ctx context.Context, str discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	key := streamKey{true, deltaStreams.Add(1)}
	if err := s.streamOpened(ctx, key); err != nil {
		return err
	}
	watches := make(map[string]*deltaWatch)
	defer func() {
		for _, w := range watches {
			if w.cancel != nil {
				w.cancel()
			}
		}
		s.streamClosed(key)
	}()

	reqs, admitted := receiveRequests(ctx, str.Recv)

	// As in serveSotw: one open watch per type, each answering at most
	// once, so the channel never holds more than one response per type.
	responses := make(chan cachev3.DeltaResponse, sotwTypes)
	var nonce int64
	send := func(resp cachev3.DeltaResponse) error {
		out, err := resp.GetDeltaDiscoveryResponse()
		if err != nil {
			return status.Errorf(codes.Internal, "building the %s response: %v", TypeLabel(resp.GetDeltaRequest().GetTypeUrl()), err)
		}
		nonce++
		out.Nonce = strconv.FormatInt(nonce, 10)
		w := watches[out.GetTypeUrl()]
		w.sub.sent(resp)
		w.nonce = out.Nonce
		s.responded(key, out.GetTypeUrl(), out.GetSystemVersionInfo(), out.Nonce, func() []string {
			names := make([]string, 0, len(out.GetResources()))
			for _, r := range out.GetResources() {
				names = append(names, r.GetName())
			}
			return names
		})
		return str.Send(out)
	}
	sendQueued := func() error {
		for {
			select {
			case resp := <-responses:
				if err := send(resp); err != nil {
					return err
				}
			default:
				return nil
			}
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case resp := <-responses:
			if err := send(resp); err != nil {
				return err
			}
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			// What is queued was computed against the state before this
			// request; it goes out first, as in go-control-plane, so the
			// request's changes apply to what the client will hold.
			if err := sendQueued(); err != nil {
				return err
			}
			typeURL := req.GetTypeUrl()
			if typeURL == "" {
				return status.Error(codes.InvalidArgument, "type URL is required for ADS")
			}
			node, err := s.request(key, req.GetNode(), typeURL, "", req.GetResponseNonce(), req.GetErrorDetail(), req.GetResourceNamesSubscribe())
			if err != nil {
				return err
			}
			admitted()
			req.Node = node

			w := watches[typeURL]
			if w == nil {
				if len(watches) == sotwTypes {
					return status.Errorf(codes.InvalidArgument, "more than %d resource types on one stream", sotwTypes)
				}
				// The request is the stream's own: its map becomes the
				// subscription's, not copied (it is dropped below).
				w = &deltaWatch{sub: newDeltaSub(req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetInitialResourceVersions(), !slices.Contains(noLegacyWildcard, typeURL))}
				watches[typeURL] = w
			} else {
				if w.cancel != nil {
					w.cancel()
					w.cancel = nil
				}
				// A response of this type may have been queued between the
				// drain above and the cancel.
				if err := sendQueued(); err != nil {
					return err
				}
				if n := req.GetResponseNonce(); n != "" && n == w.nonce {
					w.sub.answered(req.GetErrorDetail() != nil)
				}
				w.sub.update(req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe())
			}
			// The subscription has the names; an open watch need not pin
			// the request's lists.
			req.ResourceNamesSubscribe, req.ResourceNamesUnsubscribe, req.InitialResourceVersions = nil, nil, nil
			cancel, err := s.mux.CreateDeltaWatch(req, w.sub, responses)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "watching %s: %v", typeURL, err)
			}
			w.cancel = cancel
		}
	}
}

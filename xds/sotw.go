package xds

import (
	"context"
	"hash/maphash"
	"iter"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The SotW ADS stream is served here rather than by go-control-plane's
// sotw server, for what an ACK costs. A SotW request repeats every name the
// proxy subscribes to (2,000 CLAs per proxy at 2,000 services), and
// go-control-plane rebuilt the stream's subscription set from them on
// every request: with the names' canonicalization, 37% of the CPU of an
// endpoint change at 1,000 proxies went to re-deriving, on each ACK, a set
// that had not changed. Here a request whose names hash as the previous
// request's of its type is taken as the same subscription: the set is kept
// and the names are not decoded at all (see sotwRequest).
//
// The protocol is go-control-plane's (v0.14, pkg/server/sotw/v3), which the
// caches are written against: one watch per type; a request carrying
// another nonce than the latest response of its type is stale and ignored
// (after tracking has seen it, so a late NACK is still reported); a new
// request of a type cancels its watch, and a response of that type still
// queued is dropped, not sent (the endpoint cache counts a response as
// sent only when GetReturnedResources is called); legacy wildcard only for
// the types not in noLegacyWildcard. Envoy's side is GrpcMuxImpl
// (source/extensions/config_subscription/grpc/grpc_mux_impl.cc, Envoy
// 1.40), which sends each type's full name list with the nonce of the
// latest response it saw of that type.

// sotwTypes bounds the watches a stream can have open (one per served
// type), and so the responses queued for it at once.
const sotwTypes = 8

var namesSeed = maphash.MakeSeed()

// namesHash identifies a request's name list, in order: Envoy sends a
// type's names in the same order on every request until they change.
// sotwRequest.split computes the same hash from the names' bytes.
func namesHash(names []string) uint64 {
	var h maphash.Hash
	h.SetSeed(namesSeed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// sotwRequest is what serveSotw receives. Through xdsCodec (Serve), its
// resource names stay encoded (fields, as on the wire) with their hash and
// count, so that an ACK repeating the previous names is never decoded:
// with the names decoded into shared strings, looking 2,000 of them up per
// ACK was still a quarter of an endpoint change's CPU. Through another
// codec (Register on a server of the caller's), the embedded request is
// decoded in full, names included, and encoded is false.
type sotwRequest struct {
	*discoveryv3.DiscoveryRequest
	encoded bool
	fields  []byte
	hash    uint64
	count   int
	// buf holds fields, from fieldBuffers until release.
	buf *[]byte
}

// fieldBuffers holds the buffers of sotwRequest.fields (*[]byte): growing
// a fresh slice to 100 KiB per ACK cost more than decoding the names did.
var fieldBuffers sync.Pool

// release gives back the buffer of the encoded names; the names are gone
// with it unless names was called first.
func (r *sotwRequest) release() {
	if r.buf != nil {
		*r.buf = r.fields[:0]
		fieldBuffers.Put(r.buf)
		r.buf, r.fields, r.encoded = nil, nil, false
	}
}

func newSotwRequest() *sotwRequest {
	return &sotwRequest{DiscoveryRequest: &discoveryv3.DiscoveryRequest{}}
}

// split is xdsCodec's decoding of a sotwRequest.
func (r *sotwRequest) split(b []byte) error {
	var h maphash.Hash
	h.SetSeed(namesSeed)
	r.release()
	bp, _ := fieldBuffers.Get().(*[]byte)
	if bp == nil || cap(*bp) < len(b) {
		buf := make([]byte, 0, len(b))
		bp = &buf
	}
	// The names' fields are part of b: they fit without growing.
	r.buf, r.fields = bp, (*bp)[:0]
	r.encoded, r.count = true, 0
	err := splitRequest(b, r.DiscoveryRequest, func(field, value []byte) error {
		r.fields = append(r.fields, field...)
		h.Write(value)
		h.WriteByte(0)
		r.count++
		return nil
	})
	r.hash = h.Sum64()
	return err
}

// names returns the request's resource names, decoding them (into
// intern's strings where it has them) if they are still encoded.
func (r *sotwRequest) names(intern func([]byte) (string, bool)) ([]string, error) {
	if !r.encoded {
		return r.GetResourceNames(), nil
	}
	var decoded discoveryv3.DiscoveryRequest
	if err := decodeRequest(r.fields, &decoded, intern); err != nil {
		return nil, err
	}
	r.release()
	r.ResourceNames = decoded.ResourceNames
	return r.ResourceNames, nil
}

// namesID is the request's names' hash and count.
func (r *sotwRequest) namesID() (uint64, int) {
	if r.encoded {
		return r.hash, r.count
	}
	return namesHash(r.GetResourceNames()), len(r.GetResourceNames())
}

// noLegacyWildcard are the types for which an empty request means nothing,
// not every resource: Envoy names them, and legacy wildcard on the shared
// endpoint cache would send a proxy every CLA in the mesh when its last EDS
// cluster goes away. grpc-go never relies on wildcard. LDS and CDS keep
// it: Envoy subscribes to them with empty names.
var noLegacyWildcard = []string{resourcev3.EndpointType, resourcev3.RouteType, resourcev3.SecretType}

// sotwSub is a SotW stream's subscription of one type, as go-control-plane's
// stream.Subscription (v0.14) keeps it, but for its names: an interned
// nameSet shared by every stream subscribing to the same names, rather than
// a map per stream. The version map (returned) stays per stream: the
// endpoint cache edits it in place.
type sotwSub struct {
	wildcard bool
	// legacy: the stream has named nothing yet and an empty request means
	// wildcard.
	legacy   bool
	names    *nameSet
	returned map[string]string
}

var (
	_ cachev3.Subscription = (*sotwSub)(nil)
	_ subscription         = (*sotwSub)(nil)
)

func newSotwSub(names []string, legacyWildcard bool) *sotwSub {
	s := &sotwSub{wildcard: len(names) == 0 && legacyWildcard, legacy: legacyWildcard, returned: make(map[string]string)}
	s.set(names)
	return s
}

// set replaces the subscription with a request's names, as
// stream.Subscription.SetResourceSubscription does.
func (s *sotwSub) set(names []string) {
	if s.legacy {
		if len(names) == 0 {
			return
		}
		s.legacy = false
	}
	wildcard := slices.Contains(names, "*")
	s.names = sharedNames.internList(withoutWildcard(names))
	if !wildcard {
		for name := range s.returned {
			if !s.names.has(name) {
				delete(s.returned, name)
			}
		}
	}
	s.wildcard = wildcard
}

func (s *sotwSub) IsWildcard() bool                       { return s.wildcard }
func (s *sotwSub) ReturnedResources() map[string]string   { return s.returned }
func (s *sotwSub) subscribes(name string) bool            { return s.names.has(name) }
func (s *sotwSub) subscribedCount() int                   { return s.names.len() }
func (s *sotwSub) setReturned(returned map[string]string) { s.returned = returned }

func (s *sotwSub) subscribed() iter.Seq[string] { return s.names.all() }

// SubscribedResources is for go-control-plane's caches, a copy; Weft's
// read the names through subscription.
func (s *sotwSub) SubscribedResources() map[string]struct{} {
	return namesMap(s.names.all(), s.names.len())
}

type sotwWatch struct {
	cancel func()
	sub    *sotwSub
	// nonce is that of the latest response sent for the type.
	nonce string
	// names and count identify the request the subscription was built
	// from (namesHash, len).
	names uint64
	count int
}

var sotwStreams atomic.Int64

// serveSotw serves one admitted SotW ADS stream until the client ends it
// (nil), ctx ends (nil: the caller reports ctx's cause), or a request is
// refused (its status).
func (s *Server) serveSotw(ctx context.Context, str discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	key := streamKey{false, sotwStreams.Add(1)}
	if err := s.streamOpened(ctx, key); err != nil {
		return err
	}
	watches := make(map[string]*sotwWatch)
	defer func() {
		for _, w := range watches {
			if w.cancel != nil {
				w.cancel()
			}
		}
		s.streamClosed(key)
	}()

	reqs, admitted := receiveRequests(ctx, func() (*sotwRequest, error) {
		req := newSotwRequest()
		return req, str.RecvMsg(req)
	})

	// Every open watch answers at most once, into this channel, and a
	// cancelled watch's answer is drained before its type gets a new watch:
	// it never holds more than one response per type, so a cache never
	// blocks on it.
	responses := make(chan cachev3.Response, sotwTypes)
	var nonce int64
	send := func(resp cachev3.Response) error {
		out, err := resp.GetDiscoveryResponse()
		if err != nil {
			return status.Errorf(codes.Internal, "building the %s response: %v", TypeLabel(resp.GetRequest().GetTypeUrl()), err)
		}
		nonce++
		out.Nonce = strconv.FormatInt(nonce, 10)
		w := watches[out.GetTypeUrl()]
		w.sub.setReturned(resp.GetReturnedResources())
		w.nonce = out.Nonce
		s.responded(key, out.GetTypeUrl(), out.GetVersionInfo(), out.Nonce, func() []string {
			names := make([]string, 0, len(out.GetResources()))
			for _, a := range out.GetResources() {
				names = append(names, ResourceName(a.GetValue()))
			}
			return names
		})
		return str.Send(out)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case resp := <-responses:
			if err := send(resp); err != nil {
				return err
			}
		case raw, ok := <-reqs:
			if !ok {
				return nil
			}
			req := raw.DiscoveryRequest
			typeURL := req.GetTypeUrl()
			if typeURL == "" {
				return status.Error(codes.InvalidArgument, "type URL is required for ADS")
			}
			w := watches[typeURL]
			hash, count := raw.namesID()
			sameNames := w != nil && hash == w.names && count == w.count
			// Tracking sees every request, stale or not; it needs the names
			// only when they are new (see canonicalNames).
			var names []string
			if !sameNames {
				var err error
				if names, err = raw.names(s.endpoints.intern); err != nil {
					return status.Errorf(codes.InvalidArgument, "%v", err)
				}
			}
			raw.release()
			node, err := s.request(key, req.GetNode(), typeURL, req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail(), names)
			if err != nil {
				return err
			}
			admitted()
			req.Node = node

			if w == nil {
				if len(watches) == sotwTypes {
					return status.Errorf(codes.InvalidArgument, "more than %d resource types on one stream", sotwTypes)
				}
				w = &sotwWatch{sub: newSotwSub(names, !slices.Contains(noLegacyWildcard, typeURL))}
				watches[typeURL] = w
			} else {
				if w.nonce != "" && req.GetResponseNonce() != w.nonce {
					continue // stale: an answer to an older response
				}
				w.cancel()
				w.cancel = nil
				if err := s.dropQueued(typeURL, responses, send); err != nil {
					return err
				}
				if !sameNames {
					w.sub.set(names)
				}
			}
			w.names, w.count = hash, count
			// The subscription has the names; an open watch need not pin
			// the request's list.
			req.ResourceNames = nil
			cancel, err := s.mux.CreateWatch(req, w.sub, responses)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "watching %s: %v", typeURL, err)
			}
			w.cancel = cancel
		}
	}
}

// receiveRequests reads a stream's requests on a goroutine of its own, so
// that a stream loop waits for requests, responses and the end of ctx at
// once. The channel closes when the stream or ctx ends.
//
// After the first request it reads nothing until the loop calls admitted:
// a stream waits in that first request while its node is validated and
// for a syncing slot, and reading ahead would decode its next request
// meanwhile. A reconnecting delta proxy's CDS request lists a version per
// cluster (about 400 KB decoded at 2,000 services), and in a reconnect
// storm every waiting stream would hold one; unread, it stays in gRPC's
// flow-control window.
func receiveRequests[T any](ctx context.Context, recv func() (T, error)) (_ <-chan T, admitted func()) {
	reqs := make(chan T)
	admittedCh := make(chan struct{})
	admitted = sync.OnceFunc(func() { close(admittedCh) })
	go func() {
		defer close(reqs)
		for first := true; ; first = false {
			if !first {
				select {
				case <-admittedCh:
				case <-ctx.Done():
					return
				}
			}
			req, err := recv()
			if err != nil {
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, admitted
}

// dropQueued empties responses after typeURL's watch was cancelled: its
// response, if queued, is dropped (the request that cancelled it asks
// again), and the other types' responses are sent.
func (s *Server) dropQueued(typeURL string, responses chan cachev3.Response, send func(cachev3.Response) error) error {
	for {
		select {
		case resp := <-responses:
			if resp.GetRequest().GetTypeUrl() == typeURL {
				continue
			}
			if err := send(resp); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

package xds

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/weftmesh/weft/proxy"
)

// ConfigTypes are the type URLs of a node's configuration, in the order
// Envoy applies them.
var ConfigTypes = []string{
	resourcev3.ListenerType,
	resourcev3.RouteType,
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.SecretType,
}

// NodeConfig returns what the node is served: the listeners, routes,
// clusters and secrets of its last good set, and the ClusterLoadAssignments
// of the shared endpoint cache that its EDS clusters name (a CLA not yet
// set is absent). Every type of ConfigTypes is a key; each slice is sorted
// by name. ok is false when no set was ever accepted for the node.
//
// The resources are the server's own and must not be mutated.
func (s *Server) NodeConfig(nodeID string) (res map[string][]types.Resource, ok bool) {
	res, _, ok = s.nodeConfig(nodeID)
	return res, ok
}

func (s *Server) nodeConfig(nodeID string) (map[string][]types.Resource, map[string]string, bool) {
	s.setMu.Lock()
	snap := s.current[nodeID]
	s.setMu.Unlock()
	if snap == nil {
		return nil, nil, false
	}
	// A snapshot is immutable once built, so it is read outside the lock.
	res := make(map[string][]types.Resource, len(ConfigTypes))
	versions := snap.versions()
	for _, typeURL := range snapshotTypes {
		byName := snap.GetResources(typeURL)
		out := make([]types.Resource, 0, len(byName))
		for _, name := range slices.Sorted(maps.Keys(byName)) {
			out = append(out, byName[name])
		}
		res[typeURL] = out
	}

	var edsNames []string
	for _, r := range res[resourcev3.ClusterType] {
		c, _ := r.(*clusterv3.Cluster)
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		edsNames = append(edsNames, cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName()))
	}
	slices.Sort(edsNames)
	edsNames = slices.Compact(edsNames)

	clas := make([]types.Resource, 0, len(edsNames))
	named := make([]namedResource, 0, len(edsNames))
	s.ep.mu.Lock()
	for _, name := range edsNames {
		if cla := s.ep.current[name]; cla != nil {
			clas = append(clas, cla)
			named = append(named, namedResource{name: name, res: cla, hash: s.ep.hashes[name]})
		}
	}
	s.ep.mu.Unlock()
	res[resourcev3.EndpointType] = clas
	// Proxies see EDS versions per CLA; this one, built like the per-node
	// types' versions, only says whether two dumps hold the same endpoints.
	versions[resourcev3.EndpointType] = typeVersion(named)
	return res, versions, true
}

// NodeConfigDocument is the JSON of GET /debug/config/<node>. Resources are
// keyed by type URL; each is the resource's protojson with Envoy's field
// names (as in Envoy's config_dump), private key material redacted.
type NodeConfigDocument struct {
	Node string `json:"node"`
	// Versions are keyed by type URL. The EDS one is a content hash of the
	// CLAs listed, not a version any proxy was sent.
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

// Redacted replaces inline private key material in NodeConfigDocument.
const Redacted = "[redacted]"

// EncodeNodeConfig builds the document GET /debug/config/<node> serves.
func EncodeNodeConfig(nodeID string, versions map[string]string, res map[string][]types.Resource) (*NodeConfigDocument, error) {
	doc := &NodeConfigDocument{
		Node:      nodeID,
		Versions:  versions,
		Resources: make(map[string][]json.RawMessage, len(res)),
	}
	if doc.Versions == nil {
		doc.Versions = map[string]string{}
	}
	opts := protojson.MarshalOptions{UseProtoNames: true, Resolver: lenientResolver{}}
	for typeURL, items := range res {
		out := make([]json.RawMessage, 0, len(items))
		for i, r := range items {
			b, err := opts.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("encoding %s[%d] (%q) of node %s: %w", typeURLLabel(typeURL), i, cachev3.GetResourceName(r), nodeID, err)
			}
			b, err = redactJSON(b)
			if err != nil {
				return nil, fmt.Errorf("redacting %s[%d] (%q) of node %s: %w", typeURLLabel(typeURL), i, cachev3.GetResourceName(r), nodeID, err)
			}
			out = append(out, b)
		}
		doc.Resources[typeURL] = out
	}
	return doc, nil
}

// DecodeResources turns the document's resources back into Envoy messages.
// Typed configs of types this binary does not link come back as empty
// placeholders instead of failing the whole document.
func (d *NodeConfigDocument) DecodeResources() (map[string][]types.Resource, error) {
	opts := protojson.UnmarshalOptions{Resolver: lenientResolver{}, DiscardUnknown: true}
	out := make(map[string][]types.Resource, len(d.Resources))
	for _, typeURL := range slices.Sorted(maps.Keys(d.Resources)) {
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
		if err != nil {
			return nil, fmt.Errorf("decoding resources of type %s: %w", typeURL, err)
		}
		items := d.Resources[typeURL]
		res := make([]types.Resource, 0, len(items))
		for i, raw := range items {
			m := mt.New().Interface()
			if err := opts.Unmarshal(raw, m); err != nil {
				return nil, fmt.Errorf("decoding %s[%d]: %w", typeURLLabel(typeURL), i, err)
			}
			res = append(res, m)
		}
		out[typeURL] = res
	}
	return out, nil
}

func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	res, versions, ok := s.nodeConfig(node)
	if !ok {
		msg := "no configuration for node " + node
		if _, _, err := proxy.ParseNodeID(node); err != nil {
			msg += ": " + err.Error()
		} else {
			msg += ": the control plane has accepted no resources for it (is the pod meshed and running?)"
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": msg})
		return
	}
	doc, err := EncodeNodeConfig(node, versions, res)
	if err != nil {
		s.log.Error("encoding node configuration", "node", node, "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

// sensitiveFields name the fields whose DataSources hold key material:
// TlsCertificate.private_key and .password, GenericSecret.secret and
// .secrets, TlsSessionTicketKeys.keys. Inside them inline data is
// redacted; file names and SDS references are kept.
var sensitiveFields = map[string]bool{
	"private_key":         true,
	"password":            true,
	"secret":              true,
	"secrets":             true,
	"session_ticket_keys": true,
}

// redactJSON walks the protojson of a resource, so typed configs packed in
// Any (a TLS context inside a transport socket) are covered too.
func redactJSON(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	redact(v, false)
	// Re-encoded even when nothing was redacted: protojson's whitespace is
	// deliberately unstable, encoding/json's sorted keys are not.
	return json.Marshal(v)
}

func redact(v any, sensitive bool) {
	switch t := v.(type) {
	case map[string]any:
		if sensitive {
			_, ib := t["inline_bytes"]
			_, is := t["inline_string"]
			if ib || is {
				// inline_string, not inline_bytes: the placeholder must still
				// decode (it is not base64).
				delete(t, "inline_bytes")
				t["inline_string"] = Redacted
			}
		}
		for k, child := range t {
			redact(child, sensitive || sensitiveFields[k])
		}
	case []any:
		for _, child := range t {
			redact(child, sensitive)
		}
	}
}

// lenientResolver resolves Any types from the global registry and, for a
// type this binary does not link, returns an empty placeholder message, so
// one unknown typed config empties that config instead of failing a dump.
type lenientResolver struct{}

func (lenientResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (lenientResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if errors.Is(err, protoregistry.NotFound) {
		return unknownType, nil
	}
	return mt, err
}

func (lenientResolver) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

func (lenientResolver) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}

// unknownType is a message with no fields: protojson drops every field of
// an unknown typed config into it (DiscardUnknown) and prints only @type.
var unknownType = func() protoreflect.MessageType {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:        new("weft/xds/unknown.proto"),
		Package:     new("weft.xds"),
		Syntax:      new("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: new("UnknownTypedConfig")}},
	}, nil)
	if err != nil {
		panic(fmt.Sprintf("building the placeholder message: %v", err))
	}
	return dynamicpb.NewMessageType(fd.Messages().Get(0))
}()

// typeURLLabel is typeLabel for URLs that may be of no xDS type.
func typeURLLabel(typeURL string) string {
	if l := TypeLabel(typeURL); l != "other" {
		return l
	}
	return strings.TrimPrefix(typeURL, resourcev3.APITypePrefix)
}

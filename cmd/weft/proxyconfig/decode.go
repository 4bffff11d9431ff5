package proxyconfig

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	// The typed configs inside resources (HTTP connection manager, TCP
	// proxy, LB policies, TLS contexts...) must resolve when resources are
	// read back from JSON. translate/check links every type translate
	// emits, since it judges them all.
	_ "github.com/weftmesh/weft/translate/check"
	"github.com/weftmesh/weft/xds"
)

// DecodeNodeConfig reads the JSON of the control plane's
// GET /debug/config/<node> (an xds.NodeConfigDocument) and returns it with
// its resources decoded, ready for Render.
func DecodeNodeConfig(r io.Reader) (*xds.NodeConfigDocument, map[string][]types.Resource, error) {
	var doc xds.NodeConfigDocument
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("reading the node configuration: %w", err)
	}
	res, err := doc.DecodeResources()
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %w", doc.Node, err)
	}
	return &doc, res, nil
}

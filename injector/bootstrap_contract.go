//go:build ignore

// Excluded until package injector/bootstrap is merged: then the build line
// above goes, and contract_tmp.go with it.

package injector

import "github.com/weftmesh/weft/injector/bootstrap"

// The Envoy bootstrap comes from package bootstrap; these names are what
// the rest of the injector calls.
type bootstrapConfig = bootstrap.Config

var envoyBootstrapYAML = bootstrap.EnvoyYAML

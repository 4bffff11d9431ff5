//go:build weft_bootstrap_merged

package injector

import "github.com/weftmesh/weft/injector/bootstrap"

// The Envoy bootstrap comes from package bootstrap; these names are what
// the rest of the injector calls.
type bootstrapConfig = bootstrap.Config

var envoyBootstrapYAML = bootstrap.EnvoyYAML

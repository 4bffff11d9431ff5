package injector

import "fmt"

// This file stands in for package injector/bootstrap, written on another
// branch, until the two are merged: delete it then and drop the build
// constraint of bootstrap_contract.go. It has the agreed signature and
// nothing else: the real bootstrap is not built here.

type bootstrapConfig struct {
	ControlPlaneAddress string
	ServerName          string
	TrustBundlePEM      []byte
	TokenPath           string
	AdminPort           uint32
}

func envoyBootstrapYAML(c bootstrapConfig) ([]byte, error) {
	if c.ControlPlaneAddress == "" {
		return nil, fmt.Errorf("bootstrap: no control plane address")
	}
	return fmt.Appendf(nil, "# stand-in bootstrap\nxds: %s\nserverName: %q\ntokenPath: %s\nadminPort: %d\ntrustBundleBytes: %d\n",
		c.ControlPlaneAddress, c.ServerName, c.TokenPath, c.AdminPort, len(c.TrustBundlePEM)), nil
}

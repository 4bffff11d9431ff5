package netns

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RequireTools is Require for a test that also runs the named programs inside the
// namespace (iptables-nft-restore, ...): where one is missing the test is skipped, saying
// which, and under CI it fails instead, like Require.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	Require(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			require(t, os.LookupEnv, fmt.Errorf("netns: %s not found in PATH (.ci/run installs it)", tool))
			return
		}
	}
}

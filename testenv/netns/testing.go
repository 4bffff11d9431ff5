package netns

import (
	"fmt"
	"net"
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

// Serve hands every connection accepted on l to handle, one at a time, until the test ends:
// then it closes l and waits for the accept loop to return. handle closes the connection.
func Serve(t testing.TB, l net.Listener, handle func(net.Conn)) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}

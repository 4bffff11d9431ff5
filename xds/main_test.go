package xds

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// The benchmark's shared setup outlives each benchmark run; end it
	// before looking for leaked goroutines.
	if err := teardownFanout(); err != nil {
		fmt.Fprintln(os.Stderr, "tearing down the fanout benchmark:", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

package sds

import (
	"flag"
	"os"
	"testing"

	"github.com/weftmesh/weft/testenv"
)

// env is a real apiserver shared by the package's integration tests; with
// -short it is not started and those tests skip.
var env *testenv.Env

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(testenv.Main(m, testenv.Options{}, &env))
}

func requireEnv(t testing.TB) {
	t.Helper()
	if env == nil {
		t.Skip("needs the testenv cluster (not started with -short)")
	}
}

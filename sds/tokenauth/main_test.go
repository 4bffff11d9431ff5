package tokenauth

import (
	"flag"
	"os"
	"testing"

	"github.com/weftmesh/weft/testenv"
)

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

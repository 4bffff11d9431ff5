package tokenauth

import (
	"os"
	"testing"

	"github.com/weftmesh/weft/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env)) }

func requireEnv(t testing.TB) { t.Helper(); testenv.RequireEnv(t, env) }

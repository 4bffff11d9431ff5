package sds

import (
	"os"
	"testing"

	"github.com/weftmesh/weft/testenv"
)

// env is a real apiserver shared by the package's integration tests; with
// -short it is not started and those tests skip.
var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env)) }

func requireEnv(t testing.TB) { t.Helper(); testenv.RequireEnv(t, env) }

package charts

import (
	"os"
	"testing"

	"github.com/weftmesh/weft/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.MainUnlessShort(m, testenv.Options{}, &env)) }

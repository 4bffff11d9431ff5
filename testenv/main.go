package testenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// Main starts one environment for a test package, runs its tests, and stops it; it returns
// the exit code for os.Exit. When a test failed, the components' logs are kept and their
// directory printed. An interrupt (Ctrl-C) stops the environment before the process exits,
// so no component or temporary directory outlives the test binary.
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m, testenv.Options{}, &env)) }
func Main(m *testing.M, opts Options, env **Env) int {
	e, err := Start(context.Background(), opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	*env = e

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		select {
		case sig := <-sigs:
			dir, err := e.StopKeepLogs()
			fmt.Fprintf(os.Stderr, "testenv: %v: stopped the environment (logs in %s) %v\n", sig, dir, err)
			os.Exit(2)
		case <-done:
		}
	}()

	code := m.Run()

	signal.Stop(sigs)
	close(done)
	<-handled
	if code != 0 {
		dir, err := e.StopKeepLogs()
		fmt.Fprintf(os.Stderr, "testenv: tests failed; component logs kept in %s\n", dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
		return code
	}
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		return 1
	}
	return code
}

// StartT starts an environment of its own for one test and stops it when the test ends,
// keeping the logs if the test failed. Prefer the shared one from Main: each costs seconds.
func StartT(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("starting testenv: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dir, err := e.StopKeepLogs()
			t.Logf("testenv component logs kept in %s", dir)
			if err != nil {
				t.Errorf("stopping testenv: %v", err)
			}
			return
		}
		if err := e.Stop(); err != nil {
			t.Errorf("stopping testenv: %v", err)
		}
	})
	return e
}

// MainUnlessShort is Main for packages whose unit tests need no cluster: with -short no
// environment starts and env stays nil, and the tests that need one skip through
// RequireEnv. -short is the invoker's choice (`make test` does not pass it), so this skip
// is not one that CI could take by accident.
func MainUnlessShort(m *testing.M, opts Options, env **Env) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	return Main(m, opts, env)
}

// RequireEnv skips t when MainUnlessShort started no environment.
func RequireEnv(t testing.TB, env *Env) {
	t.Helper()
	if env == nil {
		t.Skip("needs the testenv cluster (not started with -short)")
	}
}

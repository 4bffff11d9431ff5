package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// dumpStacks saves both sides' goroutines next to the results when
// proxies did not sync: a fleet stream waiting for a response and a
// control plane stream waiting in validation or admission look alike from
// the summary, and only the two stacks together say which side holds a
// stream the other has given up. what names the moment (connect, restart).
// It reports what it could not save and never fails the run.
func (r *run) dumpStacks(ctx context.Context, what string) {
	cpPath := filepath.Join(r.cfg.Out, fmt.Sprintf("cp-%d-%s-goroutines.txt", r.proxies, what))
	if err := r.cp.profile(ctx, "/debug/pprof/goroutine?debug=2", cpPath, 30*time.Second); err != nil {
		r.cfg.Log.Warn("no control plane goroutine dump", "moment", what, "error", err)
		_ = os.Remove(cpPath)
	}
	loadPath := filepath.Join(r.cfg.Out, fmt.Sprintf("load-%d-%s-goroutines.txt", r.proxies, what))
	if err := writeGoroutines(loadPath); err != nil {
		r.cfg.Log.Warn("no load generator goroutine dump", "moment", what, "error", err)
		return
	}
	r.cfg.Log.Info("goroutines saved", "moment", what, "control_plane", cpPath, "load_generator", loadPath)
}

func writeGoroutines(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("saving the load generator's goroutines: %w", err)
	}
	if err := pprof.Lookup("goroutine").WriteTo(f, 2); err != nil {
		f.Close()
		return fmt.Errorf("writing the load generator's goroutines to %s: %w", path, err)
	}
	return f.Close()
}

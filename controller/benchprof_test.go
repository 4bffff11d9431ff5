package controller

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
)

// WEFT_BENCH_PROFILE_DIR names a directory for profiles of one phase of the
// end-to-end benchmark, where go test's -cpuprofile covers the whole run
// (model feed and connect storm included): heapProfile writes the live heap
// at a point (after all proxies connected, say) and cpuProfile profiles from
// now until the returned stop is called.

func heapProfile(tb testing.TB, name string) {
	dir := os.Getenv("WEFT_BENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("%s: heap in use %.1f MiB, goroutine stacks %.1f MiB for %d goroutines, other runtime %.1f MiB\n", name,
		float64(ms.HeapInuse)/(1<<20), float64(ms.StackInuse)/(1<<20), runtime.NumGoroutine(),
		float64(ms.MSpanInuse+ms.MCacheInuse+ms.BuckHashSys+ms.GCSys+ms.OtherSys)/(1<<20))
	f, err := os.Create(filepath.Join(dir, name+".heap.prof"))
	if err != nil {
		tb.Fatalf("writing the %s heap profile: %v", name, err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatalf("writing the %s heap profile: %v", name, err)
	}
}

func cpuProfile(tb testing.TB, name string) (stop func()) {
	dir := os.Getenv("WEFT_BENCH_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".cpu.prof"))
	if err != nil {
		tb.Fatalf("writing the %s CPU profile: %v", name, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Fatalf("starting the %s CPU profile (not with -cpuprofile): %v", name, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

package sds

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// benchIssuance issues leaves from every P and reports issuances per
// second and the p99 latency of one issuance.
func benchIssuance(b *testing.B, issue func(*CA) error) {
	now := time.Now()
	tr := newTrust(b, now, 72*time.Hour, 48*time.Hour)
	ca := newTestCA(b, time.Now, 0)
	ca.SetMaterial(tr.material(b, now), nil)
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			if err := issue(ca); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "issuances/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkSignCSR is the proxy path: check the CSR's proof of possession,
// sign. The CSR is made once, outside the measurement (the proxy makes it).
func BenchmarkSignCSR(b *testing.B) {
	_, der := csr(b, "spiffe://cluster.local/ns/x/sa/other")
	benchIssuance(b, func(ca *CA) error {
		_, err := ca.SignCSR(Workload{"x", "a"}, der)
		return err
	})
}

// BenchmarkIssueKeyPair is the in-process path: make a key, sign.
func BenchmarkIssueKeyPair(b *testing.B) {
	benchIssuance(b, func(ca *CA) error {
		_, err := ca.IssueKeyPair(Workload{"x", "a"})
		return err
	})
}

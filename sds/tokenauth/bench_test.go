package tokenauth

import (
	"testing"
	"time"
)

// BenchmarkReconnects: 100 proxies (each its own pod-bound token) reconnect
// ten times each, in rounds, as after a control plane restart or a
// network flap. Reported: TokenReview calls per 1,000 reconnects, and the
// cost of one authentication.
func BenchmarkReconnects(b *testing.B) {
	m := setupMesh(b)
	const proxies, rounds = 100, 10
	tokens := make([]string, proxies)
	for i := range tokens {
		tokens[i] = podToken(b, m.pods["a"], time.Hour, DefaultAudience)
	}
	var reviews int64
	var reconnects int
	b.ResetTimer()
	for range b.N {
		a, err := New(Config{Client: env.Clientset, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		for range rounds {
			for _, tok := range tokens {
				if _, err := a.Authenticate(withToken(b.Context(), "Bearer "+tok)); err != nil {
					b.Fatal(err)
				}
				reconnects++
			}
		}
		reviews += a.Reviews()
	}
	b.ReportMetric(float64(reviews)*1000/float64(reconnects), "reviews/1000-reconnects")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(reconnects), "µs/reconnect")
}

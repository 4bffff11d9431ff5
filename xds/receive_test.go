package xds

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestRequestsAreNotReadAheadOfAdmission: a stream's requests after the
// first are not read (decoded) until the loop says the stream is
// admitted, then are read in order.
func TestRequestsAreNotReadAheadOfAdmission(t *testing.T) {
	cases := []struct {
		name  string
		admit bool
		// wantReads before and after the wait.
		wantReads int64
	}{
		{"waiting for admission: only the first request", false, 1},
		{"admitted: the next ones too", true, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var reads atomic.Int64
			reqs, admitted := receiveRequests(t.Context(), func() (int64, error) {
				return reads.Add(1), nil
			})
			if got := <-reqs; got != 1 {
				t.Fatalf("first request %d, want 1", got)
			}
			if tc.admit {
				admitted()
				if got := <-reqs; got != 2 {
					t.Fatalf("second request %d, want 2", got)
				}
			}
			// The receiver reads one request ahead of the loop once
			// admitted (it waits to hand it over), none before.
			time.Sleep(100 * time.Millisecond)
			if got := reads.Load(); got != tc.wantReads {
				t.Errorf("%d requests read, want %d", got, tc.wantReads)
			}
		})
	}
}

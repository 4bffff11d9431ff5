package sds

import (
	"math"
	"math/rand/v2"
	"time"
)

// renewFraction is the share of a leaf's life after which it is renewed:
// Istio and SPIRE renew around half to two thirds of the way; 70 % leaves
// 30 % of the life (7 h of a 24 h leaf) to ride out a control plane outage.
const renewFraction = 0.7

// jitterFraction spreads renewals of leaves issued together (a rollout, a
// control plane restart) over ±5 % of their life, so they do not all come
// back in the same second.
const jitterFraction = 0.05

// RenewAt is when a certificate valid from notBefore to notAfter should be
// renewed: at 70 % of its life, moved by j (in [-1, 1]) times 5 % of it.
// j outside [-1, 1] is clamped.
func RenewAt(notBefore, notAfter time.Time, j float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	j = max(-1, min(1, j))
	frac := renewFraction + j*jitterFraction
	return notBefore.Add(time.Duration(math.Round(float64(life) * frac)))
}

// jitter is uniform in [-1, 1).
func jitter() float64 { return rand.Float64()*2 - 1 }

// RenewIn is how long from now until a leaf should be renewed; zero when
// that time has passed.
func RenewIn(now time.Time, l *Leaf) time.Duration {
	return max(0, l.RenewAt.Sub(now))
}

package sds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderConfig configures a Leader. Durations default to client-go's usual
// 15s lease, 10s renew deadline, 2s retry.
type LeaderConfig struct {
	Client    kubernetes.Interface
	Namespace string
	// Lease is the Lease object's name, shared by every replica.
	Lease string
	// Identity tells replicas apart (the pod name).
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	Logger        *slog.Logger
}

// Leader elects one replica to do the writes (creating a missing bundle,
// Events); every replica reads and signs. IsLeader is cheap and safe to call
// from anywhere.
type Leader struct {
	cfg     LeaderConfig
	elector *leaderelection.LeaderElector
	leading atomic.Bool
}

// NewLeader checks cfg; Run campaigns.
func NewLeader(cfg LeaderConfig) (*Leader, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Lease == "" || cfg.Identity == "" {
		return nil, errors.New("leader election: Client, Namespace, Lease and Identity are required")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Leader{cfg: cfg}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Lease},
		Client:     cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	el, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   cfg.LeaseDuration,
		RenewDeadline:   cfg.RenewDeadline,
		RetryPeriod:     cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            cfg.Lease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				l.leading.Store(true)
				cfg.Logger.Info("identity: leading; this replica writes bundles and Events", "lease", cfg.Namespace+"/"+cfg.Lease, "identity", cfg.Identity)
			},
			OnStoppedLeading: func() {
				l.leading.Store(false)
				cfg.Logger.Info("identity: no longer leading", "lease", cfg.Namespace+"/"+cfg.Lease, "identity", cfg.Identity)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election on Lease %s/%s: %w", cfg.Namespace, cfg.Lease, err)
	}
	l.elector = el
	return l, nil
}

// IsLeader reports whether this replica holds the lease now.
func (l *Leader) IsLeader() bool { return l.leading.Load() }

// Run campaigns until ctx ends, campaigning again after losing the lease
// (an apiserver hiccup must not leave the replicas without a writer).
// On return the lease has been released.
func (l *Leader) Run(ctx context.Context) {
	for ctx.Err() == nil {
		l.elector.Run(ctx)
	}
}

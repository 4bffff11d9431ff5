// Package tokenauth authenticates xDS/SDS streams by the projected
// ServiceAccount token a proxy sends, verified with the apiserver's
// TokenReview. Its Authenticate method is an xds.Authenticator.
package tokenauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/lru"

	"github.com/weftmesh/weft/xds"
)

// Header is the gRPC metadata key carrying the token, as
// "authorization: Bearer <token>": what grpc-go's oauth/JWT call
// credentials and Envoy's google_grpc call credentials send, and what
// Istio's agent uses towards istiod.
const Header = "authorization"

// DefaultAudience is the audience proxies' projected tokens must be minted
// for (serviceAccountToken.audience in the pod spec). A token for the
// apiserver or another service is refused: a token stolen from another
// system must not open the mesh.
const DefaultAudience = "weft"

// podNameExtra is where the apiserver puts the pod a bound token belongs to.
const podNameExtra = "authentication.kubernetes.io/pod-name"

// maxTokenLen refuses oversized metadata before any parsing: projected
// tokens are ~1 KiB.
const maxTokenLen = 16 << 10

// Reason labels authentication failures (metric, and the message's prefix).
type Reason string

const (
	ReasonNoToken           Reason = "no_token"
	ReasonGarbage           Reason = "garbage"
	ReasonExpired           Reason = "expired"
	ReasonWrongAudience     Reason = "wrong_audience"
	ReasonRejected          Reason = "rejected"
	ReasonNotServiceAccount Reason = "not_service_account"
	ReasonNotPodBound       Reason = "not_pod_bound"
	ReasonRateLimited       Reason = "rate_limited"
	ReasonReviewError       Reason = "review_error"
)

// Config configures an Authenticator. Zero values take the defaults noted.
type Config struct {
	Client   kubernetes.Interface
	Audience string // DefaultAudience
	// CacheSize bounds cached successful reviews (10000): one per proxy.
	CacheSize int
	// MaxCacheTTL bounds how long a review is trusted even if the token
	// lives longer (10m), so a deleted pod's bound token stops working
	// within that time rather than at its expiry.
	MaxCacheTTL time.Duration
	// NegativeCacheSize and NegativeTTL bound remembered refusals (1000,
	// 10s): a proxy retrying a bad token costs one review per NegativeTTL.
	NegativeCacheSize int
	NegativeTTL       time.Duration
	// ReviewsPerSecond and ReviewBurst bound TokenReview calls (50/s, 100),
	// so a flood of distinct bad tokens cannot flood the apiserver; a stream
	// that would wait longer than ReviewWait (1s) for its turn is refused
	// with ResourceExhausted and the proxy retries with backoff.
	ReviewsPerSecond float64
	ReviewBurst      int
	ReviewWait       time.Duration
	// ReviewTimeout bounds one TokenReview call (5s).
	ReviewTimeout time.Duration
	// AllowUnboundTokens accepts tokens not bound to a pod (TokenRequest
	// without boundObjectRef). Off by default: an unbound token proves only
	// a ServiceAccount, so its holder could claim any pod of the namespace
	// unless the node validator knows each pod's ServiceAccount. Tokens
	// kubelet projects into pods are always pod-bound.
	AllowUnboundTokens bool
	Registry           prometheus.Registerer
	Logger             *slog.Logger
	Now                func() time.Time
}

// Authenticator verifies tokens; safe for concurrent use.
type Authenticator struct {
	cfg      Config
	positive *lru.Cache // sha256(token) -> entry
	negative *lru.Cache // sha256(token) -> entry
	limiter  *rate.Limiter
	flight   singleflight.Group
	reviews  atomic.Int64
	failures *prometheus.CounterVec
}

type entry struct {
	id     xds.Identity
	err    error
	reason Reason
	until  time.Time
}

// New checks cfg and registers the failure metric.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Client == nil {
		return nil, errors.New("token authenticator: Client is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	def(&cfg.CacheSize, 10000)
	def(&cfg.NegativeCacheSize, 1000)
	def(&cfg.ReviewBurst, 100)
	defDur(&cfg.MaxCacheTTL, 10*time.Minute)
	defDur(&cfg.NegativeTTL, 10*time.Second)
	defDur(&cfg.ReviewTimeout, 5*time.Second)
	defDur(&cfg.ReviewWait, time.Second)
	if cfg.ReviewsPerSecond <= 0 {
		cfg.ReviewsPerSecond = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Authenticator{
		cfg:      cfg,
		positive: lru.New(cfg.CacheSize),
		negative: lru.New(cfg.NegativeCacheSize),
		limiter:  rate.NewLimiter(rate.Limit(cfg.ReviewsPerSecond), cfg.ReviewBurst),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_identity_authentication_failures_total",
			Help: "xDS/SDS streams refused by the token authenticator, by reason.",
		}, []string{"reason"}),
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(a.failures); err != nil {
			return nil, fmt.Errorf("registering token authenticator metrics: %w", err)
		}
	}
	return a, nil
}

// Reviews is how many TokenReviews were sent so far.
func (a *Authenticator) Reviews() int64 { return a.reviews.Load() }

// Authenticate is the xds.Authenticator: it reads the token from the
// stream's metadata and returns who it belongs to, or an Unauthenticated
// status whose message starts with the reason.
func (a *Authenticator) Authenticate(ctx context.Context) (xds.Identity, error) {
	id, reason, err := a.authenticate(ctx)
	if err != nil {
		a.failures.WithLabelValues(string(reason)).Inc()
		return xds.Identity{}, err
	}
	return id, nil
}

var _ xds.Authenticator = (*Authenticator)(nil).Authenticate

func (a *Authenticator) authenticate(ctx context.Context) (xds.Identity, Reason, error) {
	token, err := tokenFrom(ctx)
	if err != nil {
		return xds.Identity{}, ReasonNoToken, err
	}
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	now := a.cfg.Now()
	if e, ok := a.lookup(a.positive, key, now); ok {
		return e.id, "", nil
	}
	if e, ok := a.lookup(a.negative, key, now); ok {
		return xds.Identity{}, e.reason, e.err
	}
	claims, err := peek(token)
	if err != nil {
		// Not cached: telling garbage apart costs less than a cache entry.
		return xds.Identity{}, ReasonGarbage, unauthenticated(ReasonGarbage, "token is not a JWT: %v", err)
	}
	// The claims are unverified here; they are used only to refuse early,
	// never to accept.
	if exp := claims.expiry(); !exp.IsZero() && !now.Before(exp) {
		return xds.Identity{}, ReasonExpired, unauthenticated(ReasonExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if !slices.Contains(claims.Aud, a.cfg.Audience) {
		return xds.Identity{}, ReasonWrongAudience, unauthenticated(ReasonWrongAudience,
			"token audiences %q do not include %q (mount a projected token with audience %s)", claims.Aud, a.cfg.Audience, a.cfg.Audience)
	}
	// Concurrent reconnects with one token (a proxy's parallel streams) share
	// one review.
	v, _, _ := a.flight.Do(key, func() (any, error) {
		// A flight that ended between our lookup and Do has cached its answer.
		if e, ok := a.lookup(a.positive, key, now); ok {
			return e, nil
		}
		if e, ok := a.lookup(a.negative, key, now); ok {
			return e, nil
		}
		return a.review(ctx, key, token, claims.expiry()), nil
	})
	e := v.(*entry)
	return e.id, e.reason, e.err
}

func (a *Authenticator) lookup(c *lru.Cache, key string, now time.Time) (*entry, bool) {
	v, ok := c.Get(key)
	if !ok {
		return nil, false
	}
	e := v.(*entry)
	if !now.Before(e.until) {
		c.Remove(key)
		return nil, false
	}
	return e, true
}

// review asks the apiserver, within the rate limit, and caches the answer
// (refusals briefly; transient failures not at all).
func (a *Authenticator) review(ctx context.Context, key, token string, exp time.Time) *entry {
	wait, cancelWait := context.WithTimeout(ctx, a.cfg.ReviewWait)
	err := a.limiter.Wait(wait)
	cancelWait()
	if err != nil {
		return &entry{reason: ReasonRateLimited, err: status.Errorf(codes.ResourceExhausted,
			"%s: too many token reviews, retry later: %v", ReasonRateLimited, err)}
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ReviewTimeout)
	defer cancel()
	a.reviews.Add(1)
	tr, err := a.cfg.Client.AuthenticationV1().TokenReviews().Create(rctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{a.cfg.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		a.cfg.Logger.Warn("token review failed", "err", err)
		return &entry{reason: ReasonReviewError, err: status.Errorf(codes.Unavailable, "%s: reviewing token: %v", ReasonReviewError, err)}
	}
	now := a.cfg.Now()
	e := a.judge(tr.Status)
	if e.err != nil {
		e.until = now.Add(a.cfg.NegativeTTL)
		a.negative.Add(key, e)
		return e
	}
	e.until = now.Add(a.cfg.MaxCacheTTL)
	if !exp.IsZero() && exp.Before(e.until) {
		e.until = exp
	}
	a.positive.Add(key, e)
	return e
}

// judge turns a TokenReview status into an identity or a refusal.
func (a *Authenticator) judge(st authenticationv1.TokenReviewStatus) *entry {
	if !st.Authenticated {
		r := ReasonRejected
		switch msg := strings.ToLower(st.Error); {
		case strings.Contains(msg, "expired"):
			r = ReasonExpired
		case strings.Contains(msg, "audience"):
			r = ReasonWrongAudience
		}
		detail := st.Error
		if detail == "" {
			detail = "not authenticated"
		}
		return &entry{reason: r, err: unauthenticated(r, "token refused by the apiserver: %s", detail)}
	}
	if !slices.Contains(st.Audiences, a.cfg.Audience) {
		return &entry{reason: ReasonWrongAudience, err: unauthenticated(ReasonWrongAudience,
			"token authenticated for audiences %q, not %q", st.Audiences, a.cfg.Audience)}
	}
	ns, sa, err := serviceaccount.SplitUsername(st.User.Username)
	if err != nil {
		return &entry{reason: ReasonNotServiceAccount, err: unauthenticated(ReasonNotServiceAccount,
			"token belongs to %q, not a ServiceAccount", st.User.Username)}
	}
	id := xds.Identity{Namespace: ns, ServiceAccount: sa}
	if pods := st.User.Extra[podNameExtra]; len(pods) == 1 && pods[0] != "" {
		id.Pod = pods[0]
	} else if !a.cfg.AllowUnboundTokens {
		return &entry{reason: ReasonNotPodBound, err: unauthenticated(ReasonNotPodBound,
			"token of ServiceAccount %s/%s is not bound to a pod (use the projected token kubelet mounts)", ns, sa)}
	}
	return &entry{id: id}
}

func unauthenticated(r Reason, format string, args ...any) error {
	return status.Errorf(codes.Unauthenticated, "%s: "+format, append([]any{r}, args...)...)
}

func tokenFrom(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(Header)
	if len(vals) == 0 {
		return "", unauthenticated(ReasonNoToken, "no %q metadata: send the projected ServiceAccount token as %q", Header, "authorization: Bearer <token>")
	}
	if len(vals) > 1 {
		return "", unauthenticated(ReasonNoToken, "%d %q metadata values: send exactly one", len(vals), Header)
	}
	v := strings.TrimSpace(vals[0])
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", unauthenticated(ReasonNoToken, "%q metadata is not \"Bearer <token>\"", Header)
	}
	token = strings.TrimSpace(token)
	if len(token) > maxTokenLen {
		return "", unauthenticated(ReasonGarbage, "token is %d bytes, more than %d", len(token), maxTokenLen)
	}
	return token, nil
}

// claims are the parts of a ServiceAccount JWT read before review.
type claims struct {
	Exp int64    `json:"exp"`
	Aud audience `json:"aud"`
}

func (c claims) expiry() time.Time {
	if c.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(c.Exp, 0)
}

// audience is a JWT aud: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud is neither a string nor a list of strings")
	}
	*a = many
	return nil
}

// peek decodes a JWT's payload without verifying it.
func peek(token string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, fmt.Errorf("%d dot-separated parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}, fmt.Errorf("payload is not base64url: %w", err)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return claims{}, fmt.Errorf("payload is not JSON claims: %w", err)
	}
	return c, nil
}

package tokenauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/xds"
)

var quiet = slog.New(slog.DiscardHandler)

// mesh is namespace x with ServiceAccounts a and b and one pod of each.
type mesh struct {
	ns   string
	pods map[string]*corev1.Pod // by ServiceAccount
}

var (
	meshOnce sync.Once
	theMesh  mesh
	meshErr  error
)

func setupMesh(t testing.TB) mesh {
	t.Helper()
	requireEnv(t)
	meshOnce.Do(func() {
		ctx := context.Background()
		cs := env.Clientset
		m := mesh{ns: "x", pods: map[string]*corev1.Pod{}}
		if _, meshErr = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.ns}}, metav1.CreateOptions{}); meshErr != nil {
			return
		}
		for _, sa := range []string{"a", "b"} {
			if _, meshErr = cs.CoreV1().ServiceAccounts(m.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); meshErr != nil {
				return
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p" + sa},
				Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			}
			if m.pods[sa], meshErr = cs.CoreV1().Pods(m.ns).Create(ctx, pod, metav1.CreateOptions{}); meshErr != nil {
				return
			}
		}
		theMesh = m
	})
	if meshErr != nil {
		t.Fatalf("setting up namespace x: %v", meshErr)
	}
	return theMesh
}

// podToken is what kubelet projects into a pod: a token of the pod's
// ServiceAccount bound to the pod, for the given audiences.
func podToken(t testing.TB, pod *corev1.Pod, ttl time.Duration, audiences ...string) string {
	t.Helper()
	secs := int64(ttl / time.Second)
	tr, err := env.Clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: audiences, ExpirationSeconds: &secs,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return tr.Status.Token
}

func withToken(ctx context.Context, header string) context.Context {
	if header == "" {
		return ctx
	}
	return metadata.NewIncomingContext(ctx, metadata.Pairs(Header, header))
}

// tamper changes a JWT's payload (re-encoded, signature kept): claims we
// choose, a signature that no longer matches.
func tamper(t *testing.T, token string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	edit(claims)
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func newAuth(t *testing.T, mut func(*Config)) *Authenticator {
	t.Helper()
	cfg := Config{Client: env.Clientset, Registry: prometheus.NewRegistry(), Logger: quiet}
	if mut != nil {
		mut(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticateRealTokens(t *testing.T) {
	m := setupMesh(t)
	podA := m.pods["a"]
	good := podToken(t, podA, time.Hour, DefaultAudience)
	saOnly, err := env.CreateToken(t.Context(), m.ns, "a", time.Hour, DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	otherAud := podToken(t, podA, time.Hour, "vault")
	apiserverAud := podToken(t, podA, time.Hour)
	forged := tamper(t, good, func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" })

	cases := []struct {
		name     string
		header   string
		cfg      func(*Config)
		want     xds.Identity
		code     codes.Code
		reason   Reason
		msg      string
		reviewed bool
	}{
		{"pod-bound token", "Bearer " + good, nil, xds.Identity{Namespace: "x", ServiceAccount: "a", Pod: "pa"}, codes.OK, "", "", true},
		{"lower-case scheme", "bearer " + good, nil, xds.Identity{Namespace: "x", ServiceAccount: "a", Pod: "pa"}, codes.OK, "", "", true},
		{"unbound token refused", "Bearer " + saOnly, nil, xds.Identity{}, codes.Unauthenticated, ReasonNotPodBound, "not bound to a pod", true},
		{"unbound token when allowed", "Bearer " + saOnly, func(c *Config) { c.AllowUnboundTokens = true }, xds.Identity{Namespace: "x", ServiceAccount: "a"}, codes.OK, "", "", true},
		{"no token", "", nil, xds.Identity{}, codes.Unauthenticated, ReasonNoToken, `no "authorization" metadata`, false},
		{"not bearer", "Basic " + good, nil, xds.Identity{}, codes.Unauthenticated, ReasonNoToken, `not "Bearer <token>"`, false},
		{"garbage", "Bearer hello", nil, xds.Identity{}, codes.Unauthenticated, ReasonGarbage, "token is not a JWT: 1 dot-separated parts", false},
		{"garbage payload", "Bearer a.!!!.c", nil, xds.Identity{}, codes.Unauthenticated, ReasonGarbage, "payload is not base64url", false},
		{"wrong audience", "Bearer " + otherAud, nil, xds.Identity{}, codes.Unauthenticated, ReasonWrongAudience, `do not include "weft"`, false},
		{"apiserver audience", "Bearer " + apiserverAud, nil, xds.Identity{}, codes.Unauthenticated, ReasonWrongAudience, `do not include "weft"`, false},
		{"expired", "Bearer " + good, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } },
			xds.Identity{}, codes.Unauthenticated, ReasonExpired, "token expired at", false},
		{"forged claims", "Bearer " + forged, nil, xds.Identity{}, codes.Unauthenticated, ReasonRejected, "token refused by the apiserver", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAuth(t, c.cfg)
			id, err := a.Authenticate(withToken(t.Context(), c.header))
			st := status.Convert(err)
			if st.Code() != c.code || !strings.HasPrefix(st.Message(), string(c.reason)) || !strings.Contains(st.Message(), c.msg) {
				t.Fatalf("got %v %q, want %v starting %q containing %q", st.Code(), st.Message(), c.code, c.reason, c.msg)
			}
			if id != c.want {
				t.Errorf("identity %+v, want %+v", id, c.want)
			}
			if got := a.Reviews() == 1; got != c.reviewed {
				t.Errorf("%d TokenReviews, want reviewed=%v", a.Reviews(), c.reviewed)
			}
			if c.reason != "" {
				if v := testutil.ToFloat64(a.failures.WithLabelValues(string(c.reason))); v != 1 {
					t.Errorf("failures{reason=%s} = %v, want 1", c.reason, v)
				}
			}
			// Asked again: answered from the cache (success or refusal), no
			// second review.
			id2, err2 := a.Authenticate(withToken(t.Context(), c.header))
			if id2 != id || status.Code(err2) != st.Code() || a.Reviews() > 1 {
				t.Errorf("second call: %+v %v after %d reviews", id2, err2, a.Reviews())
			}
		})
	}
}

func TestDeletedPodsTokenIsRefused(t *testing.T) {
	m := setupMesh(t)
	ctx := t.Context()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: m.ns},
		Spec:       corev1.PodSpec{ServiceAccountName: "a", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	pod, err := env.Clientset.CoreV1().Pods(m.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := podToken(t, pod, time.Hour, DefaultAudience)
	zero := int64(0)
	if err := env.Clientset.CoreV1().Pods(m.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, nil)
	err = env.WaitFor(ctx, 30*time.Second, "pod gone", func(ctx context.Context) (bool, error) {
		_, err := env.Clientset.CoreV1().Pods(m.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(withToken(ctx, "Bearer "+token))
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.HasPrefix(st.Message(), string(ReasonRejected)) {
		t.Fatalf("token of a deleted pod: %v %q", st.Code(), st.Message())
	}
}

// TestCacheBoundsReviews: a thousand reconnects of one proxy cost one
// review; a flood of distinct bad tokens costs at most the rate limit and
// never grows the caches past their bounds.
func TestCacheBoundsReviews(t *testing.T) {
	m := setupMesh(t)
	good := podToken(t, m.pods["a"], time.Hour, DefaultAudience)
	a := newAuth(t, func(c *Config) {
		c.ReviewsPerSecond, c.ReviewBurst, c.ReviewWait = 20, 5, 10*time.Millisecond
		c.NegativeCacheSize, c.CacheSize = 8, 8
	})
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			if _, err := a.Authenticate(withToken(t.Context(), "Bearer "+good)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := a.Reviews(); n != 1 {
		t.Errorf("1000 reconnects with one token: %d TokenReviews, want 1", n)
	}

	// Distinct forged tokens (each must be reviewed: it is well formed).
	start := time.Now()
	limited := 0
	for i := range 200 {
		bad := tamper(t, good, func(c map[string]any) { c["jti"] = fmt.Sprint(i) })
		_, err := a.Authenticate(withToken(t.Context(), "Bearer "+bad))
		switch status.Code(err) {
		case codes.ResourceExhausted:
			limited++
		case codes.Unauthenticated:
		default:
			t.Fatalf("forged token %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	// burst 5 + 20/s over the elapsed time, +1 for the good token.
	maxReviews := int64(1 + 5 + 20*elapsed.Seconds() + 1)
	if n := a.Reviews(); n > maxReviews {
		t.Errorf("200 forged tokens in %s caused %d reviews, more than the limit allows (%d)", elapsed, n, maxReviews)
	}
	if limited == 0 {
		t.Error("no forged token was rate limited")
	}
	if a.negative.Len() > 8 || a.positive.Len() > 8 {
		t.Errorf("caches grew past their bounds: negative %d positive %d", a.negative.Len(), a.positive.Len())
	}
	// The good token is still served from the cache, flood or not.
	if _, err := a.Authenticate(withToken(t.Context(), "Bearer "+good)); err != nil {
		t.Errorf("good token after the flood: %v", err)
	}
}

package testenv

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CreateToken asks the apiserver (TokenRequest API) for a token of a ServiceAccount, valid
// for the given audiences (none: the apiserver's own, the issuer) and ttl (0: one hour; the
// apiserver refuses less than ten minutes).
func (e *Env) CreateToken(ctx context.Context, namespace, serviceAccount string, ttl time.Duration, audiences ...string) (string, error) {
	spec := authenticationv1.TokenRequestSpec{Audiences: audiences}
	if ttl > 0 {
		secs := int64(ttl / time.Second)
		spec.ExpirationSeconds = &secs
	}
	tr, err := e.Clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating token for ServiceAccount %s/%s: %w", namespace, serviceAccount, err)
	}
	return tr.Status.Token, nil
}

// ReviewToken asks the apiserver (TokenReview API) whether token is valid for the given
// audiences, as a control plane authenticating a proxy would.
func (e *Env) ReviewToken(ctx context.Context, token string, audiences ...string) (authenticationv1.TokenReviewStatus, error) {
	tr, err := e.Clientset.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.TokenReviewStatus{}, fmt.Errorf("reviewing token: %w", err)
	}
	return tr.Status, nil
}

package sds

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	watchtools "k8s.io/client-go/tools/watch"
)

// DefaultRequestTimeout is how long a CertificateRequest may stay pending
// (not approved, or approved and not signed) before issuance gives up. The
// rotation loop retries with backoff, so a slow approver costs a delay, not
// the leaf in use.
const DefaultRequestTimeout = 30 * time.Second

// apiTimeout bounds the create and the delete of a request, which run to
// completion even when the caller has given up.
const apiTimeout = 10 * time.Second

// Labels and annotations on the CertificateRequests Weft creates, so an
// operator (or an approver-policy) can tell them apart and see whose leaf
// each one is.
const (
	// LabelManagedBy marks every request this control plane creates.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedByWeft  = "weft"
	// AnnotationWorkload names the workload (namespace/serviceaccount); an
	// annotation, not a label, since a ServiceAccount name can be longer
	// than a label value may be.
	AnnotationWorkload = "identity.weft.io/workload"
)

// leafUsages are the usages of an X.509-SVID for both ends of mTLS: the
// in-process CA's leaves carry exactly these.
var leafUsages = []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth, cmapi.UsageClientAuth}

// CertificateRequestConfig configures issuance through cert-manager.
type CertificateRequestConfig struct {
	Client cmclient.Interface
	// Namespace the requests are created in (the identity namespace); a
	// namespaced Issuer must live there too.
	Namespace string
	IssuerRef cmmeta.IssuerReference
	// CA gives the trust domain, the leaf lifetime asked for, and the bundle
	// every returned chain must verify against.
	CA *CA
	// Timeout bounds how long a request may stay pending (DefaultRequestTimeout if 0).
	Timeout time.Duration
	// Recorder receives a Warning Event on a request that failed; nil records none.
	Recorder record.EventRecorder
	Logger   *slog.Logger
}

// CertificateRequests is a LeafSource that has cert-manager sign: the
// control plane makes the key in memory and a CSR carrying the SPIFFE ID,
// creates a CertificateRequest, waits (by watching it) until it is Approved
// and Ready, checks what came back, and deletes the request, whatever the
// outcome. The key never leaves memory; the request holds only the CSR.
type CertificateRequests struct {
	cfg CertificateRequestConfig
}

// NewCertificateRequests checks cfg.
func NewCertificateRequests(cfg CertificateRequestConfig) (*CertificateRequests, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("external issuer: Client is required")
	case cfg.CA == nil:
		return nil, errors.New("external issuer: CA is required (trust domain, leaf lifetime, bundle)")
	case cfg.Namespace == "":
		return nil, errors.New("external issuer: Namespace is required")
	case cfg.IssuerRef.Name == "" || cfg.IssuerRef.Kind == "":
		return nil, errors.New("external issuer: IssuerRef needs a kind and a name")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &CertificateRequests{cfg: cfg}, nil
}

// ParseIssuerRef reads `<Kind>[.<group>]/<name>`: `ClusterIssuer/weft-ca`,
// `Issuer/weft`, `AWSPCAClusterIssuer.awspca.cert-manager.io/pca`. The group
// goes with the kind, as in `kubectl get kind.group/name`, because an issuer
// name may itself contain dots. The group defaults to cert-manager.io, whose
// only issuer kinds are Issuer and ClusterIssuer.
func ParseIssuerRef(s string) (cmmeta.IssuerReference, error) {
	kindGroup, name, ok := strings.Cut(s, "/")
	if !ok || kindGroup == "" || name == "" || strings.Contains(name, "/") {
		return cmmeta.IssuerReference{}, fmt.Errorf("issuer %q: want <Kind>[.<group>]/<name>, e.g. ClusterIssuer/weft-ca", s)
	}
	kind, group, _ := strings.Cut(kindGroup, ".")
	if group == "" {
		group = cmapi.SchemeGroupVersion.Group
	}
	if group == cmapi.SchemeGroupVersion.Group && kind != cmapi.IssuerKind && kind != cmapi.ClusterIssuerKind {
		return cmmeta.IssuerReference{}, fmt.Errorf("issuer %q: kind %q of group %s is neither %s nor %s", s, kind, group, cmapi.IssuerKind, cmapi.ClusterIssuerKind)
	}
	return cmmeta.IssuerReference{Kind: kind, Group: group, Name: name}, nil
}

// RequestError is an issuance cert-manager refused or did not finish; its
// message names the request.
type RequestError struct {
	// Reason is the metric label: denied, failed, timeout, invalid_certificate, api.
	Reason string
	// Request is namespace/name ("" when it was never created).
	Request string
	Err     error
}

func (e *RequestError) Error() string {
	if e.Request == "" {
		return "CertificateRequest: " + e.Err.Error()
	}
	return "CertificateRequest " + e.Request + ": " + e.Err.Error()
}

func (e *RequestError) Unwrap() error { return e.Err }

// IssueLeaf has cert-manager sign a leaf for w.
func (r *CertificateRequests) IssueLeaf(ctx context.Context, w Workload) (*Leaf, error) {
	start := time.Now()
	leaf, err := r.issue(ctx, w)
	ca := r.cfg.CA
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			ca.metrics.failed.WithLabelValues(re.Reason).Inc()
		}
		return nil, err
	}
	ca.metrics.observe("certificaterequest", start)
	return leaf, nil
}

func (r *CertificateRequests) issue(ctx context.Context, w Workload) (*Leaf, error) {
	ca := r.cfg.CA
	id, err := w.ID(ca.td)
	if err != nil {
		ca.metrics.failed.WithLabelValues("bad_identity").Inc()
		return nil, fmt.Errorf("requesting a leaf: %w", err)
	}
	key, csrPEM, err := svidCSR(id.String())
	if err != nil {
		return nil, fmt.Errorf("requesting a leaf for %s: %w", id, err)
	}
	// Created whatever the caller does meanwhile: a create cancelled in
	// flight may still land, and its name would be lost to the cleanup.
	createCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	created, err := r.cfg.Client.CertmanagerV1().CertificateRequests(r.cfg.Namespace).Create(createCtx, r.request(w, csrPEM), metav1.CreateOptions{FieldManager: "weft-identity"})
	cancel()
	if err != nil {
		return nil, &RequestError{Reason: "api", Err: fmt.Errorf("creating a request in %s for %s: %w", r.cfg.Namespace, id, err)}
	}
	name := r.cfg.Namespace + "/" + created.Name
	// Requests are cleaned up after use, whatever the outcome: they hold no
	// key, but they would pile up at one per leaf and renewal.
	defer r.delete(ctx, created.Name)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("CertificateRequest %s: %w", name, ctx.Err())
	}

	done, err := r.wait(ctx, created)
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			re.Request = name
			r.warn(created, re)
		}
		return nil, err
	}
	leaf, err := r.verify(id, key, done)
	if err != nil {
		re := &RequestError{Reason: "invalid_certificate", Request: name, Err: err}
		r.warn(created, re)
		return nil, re
	}
	return leaf, nil
}

// request is the CertificateRequest for w's CSR.
func (r *CertificateRequests) request(w Workload, csrPEM []byte) *cmapi.CertificateRequest {
	return &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "weft-leaf-",
			Namespace:    r.cfg.Namespace,
			Labels:       map[string]string{LabelManagedBy: managedByWeft},
			Annotations:  map[string]string{AnnotationWorkload: w.String()},
		},
		Spec: cmapi.CertificateRequestSpec{
			Request:   csrPEM,
			IssuerRef: r.cfg.IssuerRef,
			Duration:  &metav1.Duration{Duration: r.cfg.CA.ttl},
			Usages:    leafUsages,
		},
	}
}

// svidCSR makes a P-256 key and a CSR for an X.509-SVID: empty subject, the
// SPIFFE ID as its only SAN.
func svidCSR(id string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	u, err := url.Parse(id)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// wait watches the request until it is Approved and Ready with a
// certificate, or denied, failed, deleted, or still pending at the timeout.
func (r *CertificateRequests) wait(parent context.Context, cr *cmapi.CertificateRequest) (*cmapi.CertificateRequest, error) {
	ctx, cancel := context.WithTimeout(parent, r.cfg.Timeout)
	defer cancel()
	crs := r.cfg.Client.CertmanagerV1().CertificateRequests(cr.Namespace)
	byName := fields.OneTermEqualSelector("metadata.name", cr.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return crs.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return crs.Watch(ctx, o)
		},
	}
	last := cr
	ev, err := watchtools.UntilWithSync(ctx, lw, &cmapi.CertificateRequest{}, nil, func(e watch.Event) (bool, error) {
		if e.Type == watch.Deleted {
			return false, &RequestError{Reason: "failed", Err: errors.New("deleted before it was signed")}
		}
		got, ok := e.Object.(*cmapi.CertificateRequest)
		if !ok {
			return false, nil
		}
		last = got
		return requestDone(got)
	})
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return nil, err
		}
		// The caller giving up (its proxy left) is no issuance failure: no
		// metric, no Event.
		if parent.Err() != nil {
			return nil, fmt.Errorf("CertificateRequest %s/%s: %w", cr.Namespace, cr.Name, parent.Err())
		}
		if ctx.Err() != nil {
			return nil, &RequestError{Reason: "timeout", Err: fmt.Errorf("still pending after %s (%s)", r.cfg.Timeout, pendingState(last))}
		}
		return nil, &RequestError{Reason: "api", Err: fmt.Errorf("watching: %w", err)}
	}
	return ev.Object.(*cmapi.CertificateRequest), nil
}

// requestDone reads a request's conditions as cert-manager writes them
// (pkg/apis/certmanager/v1/types_certificaterequest.go): Denied=True is
// final, Ready=False with reason Failed is final, and the certificate is
// there once Approved=True and Ready=True.
func requestDone(cr *cmapi.CertificateRequest) (bool, error) {
	if c := condition(cr, cmapi.CertificateRequestConditionDenied); c != nil && c.Status == cmmeta.ConditionTrue {
		return false, &RequestError{Reason: "denied", Err: fmt.Errorf("denied by %s: %s", c.Reason, c.Message)}
	}
	ready := condition(cr, cmapi.CertificateRequestConditionReady)
	if ready != nil && ready.Status == cmmeta.ConditionFalse && ready.Reason == cmapi.CertificateRequestReasonFailed {
		return false, &RequestError{Reason: "failed", Err: fmt.Errorf("failed: %s", ready.Message)}
	}
	approved := condition(cr, cmapi.CertificateRequestConditionApproved)
	return approved != nil && approved.Status == cmmeta.ConditionTrue &&
		ready != nil && ready.Status == cmmeta.ConditionTrue && len(cr.Status.Certificate) > 0, nil
}

func condition(cr *cmapi.CertificateRequest, t cmapi.CertificateRequestConditionType) *cmapi.CertificateRequestCondition {
	for i := range cr.Status.Conditions {
		if cr.Status.Conditions[i].Type == t {
			return &cr.Status.Conditions[i]
		}
	}
	return nil
}

// pendingState says what a request was still waiting for.
func pendingState(cr *cmapi.CertificateRequest) string {
	approved := condition(cr, cmapi.CertificateRequestConditionApproved)
	if approved == nil || approved.Status != cmmeta.ConditionTrue {
		return "not approved: no approver has acted on it"
	}
	if ready := condition(cr, cmapi.CertificateRequestConditionReady); ready != nil {
		return fmt.Sprintf("approved, Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
	}
	return "approved, not signed: no issuer has acted on it"
}

// verify checks what cert-manager returned before anything is served with
// it: the leaf is for our key, carries exactly the SPIFFE ID asked for and
// nothing else, is an mTLS leaf, and chains to the CA's bundle.
func (r *CertificateRequests) verify(id spiffeid.ID, key *ecdsa.PrivateKey, cr *cmapi.CertificateRequest) (*Leaf, error) {
	certs, err := parseCertificates(cr.Status.Certificate)
	if err != nil {
		return nil, fmt.Errorf("status.certificate: %w", err)
	}
	leaf := certs[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("status.certificate: the certificate is not for the key of the request")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 {
		return nil, fmt.Errorf("status.certificate: SANs %s are not exactly %s", sanList(leaf), id)
	}
	if leaf.IsCA {
		return nil, errors.New("status.certificate: the certificate is a CA")
	}
	roots, err := r.cfg.CA.BundlePool()
	if err != nil {
		return nil, fmt.Errorf("verifying status.certificate: %w", err)
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	// status.ca is the issuing CA, which may be an intermediate the chain
	// in status.certificate leaves out.
	if cas, err := parseCertificates(cr.Status.CA); err == nil {
		for _, c := range cas {
			intermediates.AddCert(c)
		}
	}
	now := r.cfg.CA.now()
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, fmt.Errorf("status.certificate does not chain to the trust bundle: %w", err)
	}
	// The chain sent with the leaf is the verified path without its anchor,
	// as for leaves the in-process CA signs. cert-manager does not cut a
	// leaf's life to its issuer's (pkg/util/pki/certificatetemplate.go), so
	// the leaf is taken to end with the first certificate of its path to
	// expire, and renewed before that.
	var chain bytes.Buffer
	notAfter := leaf.NotAfter
	for _, c := range chains[0][:len(chains[0])-1] {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding key: %w", err)
	}
	return &Leaf{
		ID: id, CertChainPEM: chain.Bytes(), CertDER: leaf.Raw,
		Key: key, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		NotBefore: leaf.NotBefore, NotAfter: notAfter,
		RenewAt: RenewAt(now, notAfter, jitter()),
	}, nil
}

func sanList(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, "URI:"+u.String())
	}
	for _, d := range c.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	return out
}

// delete removes the request even when ctx has ended (the proxy went away
// mid-issuance): cleaning up is not the caller's to cancel.
func (r *CertificateRequests) delete(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	err := r.cfg.Client.CertmanagerV1().CertificateRequests(r.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.cfg.Logger.Error("identity: deleting a used CertificateRequest", "request", r.cfg.Namespace+"/"+name, "err", err)
	}
}

// warn reports a request that did not give a usable leaf: log and an Event
// on the request (Events outlive it; the metric is counted by IssueLeaf).
func (r *CertificateRequests) warn(cr *cmapi.CertificateRequest, err *RequestError) {
	r.cfg.Logger.Error("identity: external issuance failed", "reason", err.Reason, "request", err.Request,
		"workload", cr.Annotations[AnnotationWorkload], "err", err)
	if r.cfg.Recorder == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateRequestKind,
		Namespace: cr.Namespace, Name: cr.Name, UID: cr.UID}
	r.cfg.Recorder.Event(ref, corev1.EventTypeWarning, "IssuanceFailed", err.Error())
}

package sds

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultLeafTTL is how long a workload certificate lives unless
// configured otherwise: short enough that a stolen key is worth little,
// long enough that a control plane outage of hours does not take the mesh
// down.
const DefaultLeafTTL = 24 * time.Hour

// backdate absorbs clock skew between the control plane and peers: a leaf
// that is valid "from now" would be refused by a peer whose clock is a few
// seconds behind.
const backdate = 5 * time.Minute

// ErrNoMaterial is returned by issuance when the CA has never had valid
// trust material, or its last good issuer has since expired.
var ErrNoMaterial = errors.New("no valid issuer")

// Config configures a CA.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// LeafTTL is the requested lifetime of leaves (DefaultLeafTTL if 0); a
	// leaf never outlives its issuer.
	LeafTTL time.Duration
	// Registry receives the CA's metrics; nil registers nothing.
	Registry prometheus.Registerer
	Logger   *slog.Logger
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
}

// CA signs leaves with the last valid Material it was given. Safe for
// concurrent use; issuance takes no lock beyond a read lock.
type CA struct {
	td      spiffeid.TrustDomain
	ttl     time.Duration
	now     func() time.Time
	log     *slog.Logger
	metrics *caMetrics

	mu       sync.RWMutex
	material *Material
	status   Status
	// subscribers are told when the material changes (new issuer or
	// bundle), so SDS can push a new bundle and re-issue leaves.
	subscribers []chan struct{}
}

// Status is what `weft check` shows about the CA: whether it can issue, with
// what, and what is wrong with the material it was last given.
type Status struct {
	// Ready is true when the CA holds a valid issuer it can sign with now.
	Ready bool `json:"ready"`
	// Issuer, IssuerNotAfter and AnchorsNotAfter describe the material in
	// use (empty when there is none).
	Issuer          string    `json:"issuer,omitempty"`
	IssuerSerial    string    `json:"issuerSerial,omitempty"`
	IssuerNotAfter  time.Time `json:"issuerNotAfter,omitzero"`
	Anchors         int       `json:"anchors,omitempty"`
	AnchorsNotAfter time.Time `json:"anchorsNotAfter,omitzero"`
	// From names the objects and resourceVersions the material was read from.
	From string `json:"from,omitempty"`
	// Problem is the last refused material, "" when the newest material was
	// accepted. While Problem is set the CA keeps signing with the older,
	// still valid material, if it has any.
	Problem       string    `json:"problem,omitempty"`
	ProblemReason Reason    `json:"problemReason,omitempty"`
	ProblemSince  time.Time `json:"problemSince,omitzero"`
	// SkippedAnchors lists bundle entries ignored (expired, not a CA).
	SkippedAnchors []string `json:"skippedAnchors,omitempty"`
}

// New makes a CA with no material: it refuses to issue until SetMaterial.
func New(cfg Config) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("creating CA: trust domain is required")
	}
	if cfg.LeafTTL < 0 {
		return nil, fmt.Errorf("creating CA: leaf TTL %s is negative", cfg.LeafTTL)
	}
	if cfg.LeafTTL == 0 {
		cfg.LeafTTL = DefaultLeafTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ca := &CA{td: cfg.TrustDomain, ttl: cfg.LeafTTL, now: cfg.Now, log: cfg.Logger}
	m, err := newCAMetrics(cfg.Registry, ca)
	if err != nil {
		return nil, fmt.Errorf("creating CA: %w", err)
	}
	ca.metrics = m
	return ca, nil
}

// TrustDomain is the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// SetMaterial switches to m for every leaf signed from now on.
func (ca *CA) SetMaterial(m *Material, skipped []string) {
	ca.mu.Lock()
	changed := ca.material == nil || !ca.material.Issuer.Equal(m.Issuer) || string(ca.material.AnchorsPEM) != string(m.AnchorsPEM)
	ca.material = m
	ca.status = Status{SkippedAnchors: skipped}
	subs := ca.subscribers
	ca.mu.Unlock()
	ca.metrics.materialValid.Set(1)
	if changed {
		ca.log.Info("identity: using issuer", "issuer", m.Issuer.Subject.String(), "serial", m.Issuer.SerialNumber.Text(16),
			"notAfter", m.Issuer.NotAfter, "anchors", len(m.Anchors), "from", m.From)
		for _, c := range subs {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// Refuse records material that failed validation: the CA keeps signing with
// what it had and reports err until valid material arrives. It returns
// whether the problem is new (so callers emit an Event once, not on every
// resync).
func (ca *CA) Refuse(err error) bool {
	reason := ReasonOf(err)
	if reason == "" {
		reason = ReasonMalformedIssuer
	}
	ca.mu.Lock()
	isNew := ca.status.Problem != err.Error()
	if isNew {
		ca.status.Problem = err.Error()
		ca.status.ProblemReason = reason
		ca.status.ProblemSince = ca.now()
	}
	ca.mu.Unlock()
	ca.metrics.materialValid.Set(0)
	if isNew {
		ca.metrics.refused.WithLabelValues(string(reason)).Inc()
		ca.log.Error("identity: refusing trust material; still signing with the last valid issuer, if any", "reason", reason, "err", err)
	}
	return isNew
}

// Subscribe returns a channel that receives (without blocking the CA)
// after every change of issuer or bundle, and the function that ends the
// subscription.
func (ca *CA) Subscribe() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	ca.mu.Lock()
	ca.subscribers = append(ca.subscribers, c)
	ca.mu.Unlock()
	return c, func() {
		ca.mu.Lock()
		defer ca.mu.Unlock()
		ca.subscribers = slices.DeleteFunc(ca.subscribers, func(x chan struct{}) bool { return x == c })
	}
}

// Status reports the CA's state now.
func (ca *CA) Status() Status {
	ca.mu.RLock()
	st, m := ca.status, ca.material
	ca.mu.RUnlock()
	st.SkippedAnchors = append([]string(nil), st.SkippedAnchors...)
	if m == nil {
		if st.Problem == "" {
			st.Problem, st.ProblemReason = "no issuer Secret read yet", ReasonMissing
		}
		return st
	}
	now := ca.now()
	st.Ready = !now.After(m.Issuer.NotAfter)
	st.Issuer = m.Issuer.Subject.String()
	st.IssuerSerial = m.Issuer.SerialNumber.Text(16)
	st.IssuerNotAfter = m.Issuer.NotAfter
	st.Anchors = len(m.Anchors)
	st.AnchorsNotAfter = m.earliestAnchorExpiry()
	st.From = m.From
	if !st.Ready && st.Problem == "" {
		st.Problem = fmt.Sprintf("issuer %q expired at %s and no valid replacement was read", st.Issuer, m.Issuer.NotAfter.UTC().Format(time.RFC3339))
		st.ProblemReason = ReasonIssuerExpired
	}
	return st
}

// issuerSerial is the serial of the issuer in use (Status().IssuerSerial
// without building the rest of Status), nil when there is none.
func (ca *CA) issuerSerial() *big.Int {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	if ca.material == nil {
		return nil
	}
	return ca.material.Issuer.SerialNumber
}

// current is the material to sign with now, or why there is none.
func (ca *CA) current() (*Material, error) {
	ca.mu.RLock()
	m, st := ca.material, ca.status
	ca.mu.RUnlock()
	if m == nil {
		if st.Problem != "" {
			return nil, fmt.Errorf("%w: %s", ErrNoMaterial, st.Problem)
		}
		return nil, fmt.Errorf("%w: no issuer Secret read yet", ErrNoMaterial)
	}
	if ca.now().After(m.Issuer.NotAfter) {
		return nil, fmt.Errorf("%w: issuer %q expired at %s", ErrNoMaterial, m.Issuer.Subject, m.Issuer.NotAfter.UTC().Format(time.RFC3339))
	}
	return m, nil
}

// Bundle is the PEM of the trust anchors in use, for validation contexts;
// nil when the CA has no material.
func (ca *CA) Bundle() []byte {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	if ca.material == nil {
		return nil
	}
	return ca.material.AnchorsPEM
}

// BundlePool is the trust anchors in use as a pool, for tls.Config. The
// pool is shared (built once per Material, not per handshake): callers must
// not add to it.
func (ca *CA) BundlePool() (*x509.CertPool, error) {
	m, err := ca.current()
	if err != nil {
		return nil, err
	}
	return m.anchorsPool, nil
}

// Leaf is a signed workload certificate.
type Leaf struct {
	ID spiffeid.ID
	// CertChainPEM is the leaf followed by the issuer chain (not the anchor).
	CertChainPEM []byte
	// KeyPEM is set only by IssueKeyPair (PKCS#8); SignCSR leaves the key
	// where it was made.
	KeyPEM    []byte
	Key       *ecdsa.PrivateKey
	CertDER   []byte
	NotBefore time.Time
	NotAfter  time.Time
	// RenewAt is when to ask for the next one.
	RenewAt time.Time
}

// SignCSR signs a leaf for w with the CSR's public key. The CSR only proves
// possession of the key: its subject and SANs are ignored, and the leaf
// carries exactly w's SPIFFE ID, the identity the caller's stream proved.
// A caller cannot obtain another identity by asking for it.
func (ca *CA) SignCSR(w Workload, csrDER []byte) (*Leaf, error) {
	start := time.Now()
	csr, err := parseCSR(csrDER)
	if err != nil {
		ca.metrics.failed.WithLabelValues("bad_csr").Inc()
		return nil, fmt.Errorf("signing a leaf for %s: %w", w, err)
	}
	leaf, err := ca.sign(w, csr.PublicKey.(*ecdsa.PublicKey))
	if err != nil {
		return nil, err
	}
	ca.metrics.observe("csr", start)
	return leaf, nil
}

func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if block, _ := pem.Decode(der); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE REQUEST", block.Type)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parsing CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature does not verify (no proof of possession of its key): %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("CSR key %T: %w", csr.PublicKey, errUnsupportedKey)
	}
	return csr, nil
}

// IssueKeyPair makes a P-256 key in memory and a leaf for it. Used for the
// control plane's own serving certificate and for SDS delivery over the
// TLS-protected xDS stream; the key is never stored.
func (ca *CA) IssueKeyPair(w Workload) (*Leaf, error) { return ca.issueKeyPair(w) }

// issueKeyPair adds DNS names for the control plane's serving certificate
// only: grpc-go clients check the server by host name, workloads are
// checked by SPIFFE ID alone.
func (ca *CA) issueKeyPair(w Workload, dnsNames ...string) (*Leaf, error) {
	start := time.Now()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuing a leaf for %s: generating key: %w", w, err)
	}
	leaf, err := ca.sign(w, &key.PublicKey, dnsNames...)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("issuing a leaf for %s: encoding key: %w", w, err)
	}
	leaf.Key = key
	leaf.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ca.metrics.observe("keypair", start)
	return leaf, nil
}

func (ca *CA) sign(w Workload, pub *ecdsa.PublicKey, dnsNames ...string) (*Leaf, error) {
	id, err := w.ID(ca.td)
	if err != nil {
		ca.metrics.failed.WithLabelValues("bad_identity").Inc()
		return nil, fmt.Errorf("signing a leaf: %w", err)
	}
	m, err := ca.current()
	if err != nil {
		ca.metrics.failed.WithLabelValues("no_material").Inc()
		return nil, fmt.Errorf("signing a leaf for %s: %w", id, err)
	}
	now := ca.now()
	notBefore := now.Add(-backdate)
	if notBefore.Before(m.Issuer.NotBefore) {
		notBefore = m.Issuer.NotBefore
	}
	notAfter := now.Add(ca.ttl)
	if notAfter.After(m.Issuer.NotAfter) {
		notAfter = m.Issuer.NotAfter
	}
	serial, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, fmt.Errorf("signing a leaf for %s: serial: %w", id, err)
	}
	u, err := url.Parse(id.String())
	if err != nil {
		return nil, fmt.Errorf("signing a leaf for %s: %w", id, err)
	}
	// An X.509-SVID: empty subject (Go then marks the SAN critical), one URI
	// SAN, not a CA, usable on both ends of mTLS.
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		URIs:                  []*url.URL{u},
		DNSNames:              dnsNames,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.Issuer, pub, m.Key)
	if err != nil {
		ca.metrics.failed.WithLabelValues("sign").Inc()
		return nil, fmt.Errorf("signing a leaf for %s: %w", id, err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, m.ChainPEM...)
	// The certificate is not parsed back (a third of the cost of issuing):
	// its validity is the template's at the second precision X.509 stores.
	nb, na := notBefore.Truncate(time.Second), notAfter.Truncate(time.Second)
	return &Leaf{
		ID: id, CertChainPEM: chain, CertDER: der,
		NotBefore: nb, NotAfter: na,
		// From now, not the backdated NotBefore: backdating is for peers'
		// clocks and must not pull renewal earlier (for a short TTL, into
		// the past).
		RenewAt: RenewAt(now, na, jitter()),
	}, nil
}

// serialLimit: 128-bit random serials, beyond the 64 bits of entropy the
// CA/Browser baseline asks for.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

package controller

import (
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/weftmesh/weft/sds"
)

// TestIdentitySDSThroughCertManager is the external PKI mode end to end:
// cert-manager's own controllers (testenv.StartCertManager) sign the
// workload leaf through a CertificateRequest to a CA Issuer, and the sidecar
// receives it by SDS exactly as it would from the in-process CA: its own
// identity, chaining to the anchor, with the request gone once it was used.
func TestIdentitySDSThroughCertManager(t *testing.T) {
	m := setupIdentityMesh(t, "ident-cm", time.Hour)
	env.StartCertManager(t, m.sysNS)
	cm := cmclient.NewForConfigOrDie(env.Config)
	ctx := t.Context()
	// The CA Issuer signs with the issuer Secret the control plane reads,
	// so the bundle it serves is the one the leaves chain to.
	if _, err := cm.CertmanagerV1().Issuers(m.sysNS).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "weft"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "issuer"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	requests, err := cm.CertmanagerV1().CertificateRequests(m.sysNS).Watch(ctx, metav1.ListOptions{LabelSelector: sds.LabelManagedBy + "=weft"})
	if err != nil {
		t.Fatal(err)
	}
	defer requests.Stop()
	crs, err := sds.NewCertificateRequests(sds.CertificateRequestConfig{
		Client: cm, Namespace: m.sysNS, CA: m.ca, Timeout: time.Minute, Logger: testLogger(),
		IssuerRef: cmmeta.IssuerReference{Kind: cmapi.IssuerKind, Group: "cert-manager.io", Name: "weft"},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.identity.Leaves = crs
	rc := startController(t, withIdentity(m.identity))

	s := openSDS(t, rc.XDSAddr().String(), m.anchor.Cert, podToken(t, m.pods["a"]), "pa.ident-cm")
	l := s.next(t, 90*time.Second)
	issuer := verifyLeaf(t, l, m.anchor.Cert, "spiffe://cluster.local/ns/ident-cm/sa/a")
	if got, want := issuer.SerialNumber.Text(16), m.ca.Status().IssuerSerial; got != want {
		t.Errorf("leaf issued by serial %s, want the issuer Secret's %s", got, want)
	}

	// The leaf came through a request cert-manager signed, which was
	// deleted before the leaf was pushed.
	var signed, deleted bool
	for !deleted {
		select {
		case ev := <-requests.ResultChan():
			cr, ok := ev.Object.(*cmapi.CertificateRequest)
			if !ok {
				continue
			}
			if len(cr.Status.Certificate) > 0 && cr.Annotations[sds.AnnotationWorkload] == "ident-cm/a" {
				signed = true
			}
			deleted = ev.Type == watch.Deleted
		case <-time.After(10 * time.Second):
			t.Fatalf("no CertificateRequest signed and deleted (signed: %v)", signed)
		}
	}
	if !signed {
		t.Error("the request was deleted without cert-manager's certificate")
	}
	left, err := cm.CertmanagerV1().CertificateRequests(m.sysNS).List(ctx, metav1.ListOptions{LabelSelector: sds.LabelManagedBy + "=weft"})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 0 {
		t.Errorf("%d CertificateRequests left after use", len(left.Items))
	}
}

package proxyconfig

import (
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// renderSecrets says what each secret holds and, for inline certificates,
// whom they name and until when. Key material is never printed: only
// whether a key is there and where it comes from.
func renderSecrets(w io.Writer, cfg *config) {
	fmt.Fprintf(w, "SECRETS (%d)\n", len(cfg.secrets))
	for _, p := range cfg.problems[resourcev3.SecretType] {
		fmt.Fprintln(w, p)
	}
	if len(cfg.secrets) == 0 {
		fmt.Fprintln(w, "(none)")
		return
	}
	t := newTable(w, "", "NAME", "KIND", "CONTENT")
	for _, s := range cfg.secrets {
		kind, content := secretContent(s)
		t.row(s.GetName(), kind, content)
	}
	t.flush()
}

func secretContent(s *tlsv3.Secret) (kind, content string) {
	switch v := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		c := v.TlsCertificate
		parts := []string{"cert " + certificates(c.GetCertificateChain())}
		switch {
		case c.GetPrivateKey() != nil:
			parts = append(parts, "key "+keySource(c.GetPrivateKey()))
		case c.GetPrivateKeyProvider() != nil:
			parts = append(parts, "key from provider "+c.GetPrivateKeyProvider().GetProviderName())
		default:
			parts = append(parts, "no key")
		}
		return "tls certificate", strings.Join(parts, "; ")
	case *tlsv3.Secret_ValidationContext:
		vc := v.ValidationContext
		content := "trusted ca " + certificates(vc.GetTrustedCa())
		if n := len(vc.GetMatchTypedSubjectAltNames()); n > 0 {
			content += fmt.Sprintf("; %d SAN matcher(s)", n)
		}
		return "validation context", content
	case *tlsv3.Secret_SessionTicketKeys:
		return "session ticket keys", fmt.Sprintf("%d key(s), not shown", len(v.SessionTicketKeys.GetKeys()))
	case *tlsv3.Secret_GenericSecret:
		return "generic secret", "not shown"
	}
	return "empty", "-"
}

// keySource says where a key comes from without showing it.
func keySource(d *corev3.DataSource) string {
	switch v := d.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		return "file " + v.Filename
	case *corev3.DataSource_EnvironmentVariable:
		return "env " + v.EnvironmentVariable
	case *corev3.DataSource_InlineBytes, *corev3.DataSource_InlineString:
		return "inline, not shown"
	}
	return "none"
}

// certificates describes a PEM bundle: the first certificate's subject
// (SANs, else CN) and expiry, and how many follow.
func certificates(d *corev3.DataSource) string {
	var data []byte
	switch v := d.GetSpecifier().(type) {
	case nil:
		return "none"
	case *corev3.DataSource_Filename:
		return "file " + v.Filename
	case *corev3.DataSource_EnvironmentVariable:
		return "env " + v.EnvironmentVariable
	case *corev3.DataSource_InlineBytes:
		data = v.InlineBytes
	case *corev3.DataSource_InlineString:
		data = []byte(v.InlineString)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Sprintf("inline, unparsable: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return "inline, no PEM certificate"
	}
	c := certs[0]
	who := c.Subject.CommonName
	var sans []string
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	sans = append(sans, c.DNSNames...)
	if len(sans) > 0 {
		who = strings.Join(sans, ",")
	}
	s := fmt.Sprintf("%s, expires %s", cmp.Or(who, "(no subject)"), c.NotAfter.UTC().Format(time.RFC3339))
	if len(certs) > 1 {
		s += fmt.Sprintf(" (+%d in chain)", len(certs)-1)
	}
	return s
}

// Package trust decides what relay-pki publishes as relay-root-tls-secret:
// the anchors agents verify the relay server with. It is pure, so every rule
// about what may be published is tested without a cluster.
package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/relay-pki/relay-pki/internal/certinfo"
)

// MaxBundleSize bounds a source bundle; a few roots are a few KiB.
const MaxBundleSize = 1 << 20

// Bundle is a verified set of trust anchors.
type Bundle struct {
	// PEM is the normalised bundle: one CERTIFICATE block per anchor, in
	// source order, duplicates removed.
	PEM []byte
	// Anchors are the parsed certificates.
	Anchors []*x509.Certificate
	// Warnings are publishable oddities, such as an anchor that is not
	// self-signed (an intermediate used as a root).
	Warnings []string
}

// Hash is the SHA-256 of PEM, in hex.
func (b *Bundle) Hash() string {
	sum := sha256.Sum256(b.PEM)
	return hex.EncodeToString(sum[:])
}

// Leaf is a certificate chain (tls.crt) that must verify against a bundle
// before the bundle may be published.
type Leaf struct {
	Name  string
	Chain []byte
}

// Verify builds a bundle from source and checks that every leaf chains to
// it. Any failure returns an error naming the certificate and the reason;
// the caller then keeps publishing its last good bundle.
func Verify(source []byte, leaves []Leaf, now time.Time) (*Bundle, error) {
	if len(source) > MaxBundleSize {
		return nil, fmt.Errorf("trust source is %d bytes, larger than the %d byte limit", len(source), MaxBundleSize)
	}
	certs, err := certinfo.ParsePEM(source)
	if err != nil {
		return nil, fmt.Errorf("trust source: %w", err)
	}
	b := &Bundle{}
	var buf bytes.Buffer
	for i, c := range certs {
		if slices.ContainsFunc(b.Anchors, func(a *x509.Certificate) bool { return a.Equal(c) }) {
			continue
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("trust source certificate %d (%s) is not a CA", i+1, c.Subject)
		}
		if !SelfSigned(c) {
			b.Warnings = append(b.Warnings, fmt.Sprintf("anchor %s is not self-signed (issued by %s): agents will trust an intermediate as a root", c.Subject, c.Issuer))
		}
		b.Anchors = append(b.Anchors, c)
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	b.PEM = buf.Bytes()
	for _, l := range leaves {
		if len(l.Chain) == 0 {
			return nil, fmt.Errorf("%s has no certificate yet", l.Name)
		}
		if _, err := certinfo.VerifyChain(l.Chain, b.Anchors, now); err != nil {
			return nil, fmt.Errorf("%s: %w", l.Name, err)
		}
	}
	if len(b.Anchors) == 0 {
		return nil, errors.New("trust source holds no certificate")
	}
	return b, nil
}

// SelfSigned reports whether c is a root: issued by itself, and its
// signature verifies with its own key.
func SelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// Package certinfo reads and checks the certificates in relay-pki's
// secrets: parsing PEM bundles, fingerprints and chain verification.
package certinfo

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// ParsePEM returns every CERTIFICATE block in data, in order. Any other
// block type, or none at all, is an error: a bundle with a key in it is not
// a bundle.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// Fingerprint is the SHA-256 of the certificate's DER, in lowercase hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// VerifyChain checks that the first certificate of chainPEM (a tls.crt:
// leaf, then any intermediates) chains to one of roots at time now.
func VerifyChain(chainPEM []byte, roots []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	chain, err := ParsePEM(chainPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return leaf, fmt.Errorf("%s does not chain to the trust bundle: %w", leaf.Subject, err)
	}
	return leaf, nil
}

// EncodePEM is c as one CERTIFICATE block.
func EncodePEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

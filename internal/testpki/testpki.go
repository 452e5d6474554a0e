// Package testpki issues throwaway ECDSA P-256 certificates for unit tests
// and the benchmark, so that each does not carry its own copy of the same
// x509 boilerplate. relay-pki's binary does not import it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// Cert is an issued certificate and its key.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the certificate, PEM-encoded.
	PEM []byte
}

// KeyPEM is the private key, PEM-encoded (SEC 1).
func (c *Cert) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Options shape a certificate; the zero value is valid for an hour either
// side of now with no extensions beyond key usage.
type Options struct {
	NotBefore, NotAfter time.Time
	DNSNames            []string
	ExtKeyUsage         []x509.ExtKeyUsage
}

// Issue makes a certificate for cn, signed by parent or self-signed when
// parent is nil. Every certificate has the CertSign and DigitalSignature
// key usages; isCA sets the CA basic constraint.
func Issue(cn string, isCA bool, parent *Cert, o Options) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: o.NotBefore, NotAfter: o.NotAfter,
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		DNSNames: o.DNSNames, ExtKeyUsage: o.ExtKeyUsage,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("issue %q: %w", cn, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Cert: c, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// MustIssue is Issue for tests: a failure fails t.
func MustIssue(t testing.TB, cn string, isCA bool, parent *Cert, o Options) *Cert {
	t.Helper()
	c, err := Issue(cn, isCA, parent, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

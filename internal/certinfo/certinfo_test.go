package certinfo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func newCert(t *testing.T, cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestVerifyChain(t *testing.T) {
	t.Parallel()
	root, rootKey, _ := newCert(t, "root", true, nil, nil)
	other, _, _ := newCert(t, "other root", true, nil, nil)
	inter, interKey, interPEM := newCert(t, "intermediate", true, root, rootKey)
	_, _, leafPEM := newCert(t, "leaf", false, inter, interKey)
	_, _, directPEM := newCert(t, "direct", false, root, rootKey)

	tests := map[string]struct {
		chain   []byte
		roots   []*x509.Certificate
		wantErr string
	}{
		"a leaf signed by the root verifies":                      {chain: directPEM, roots: []*x509.Certificate{root}},
		"a leaf with its intermediate in tls.crt verifies":        {chain: append(append([]byte{}, leafPEM...), interPEM...), roots: []*x509.Certificate{root}},
		"a leaf without its intermediate does not":                {chain: leafPEM, roots: []*x509.Certificate{root}, wantErr: "does not chain"},
		"a leaf of another root does not":                         {chain: directPEM, roots: []*x509.Certificate{other}, wantErr: "does not chain"},
		"either root of a bundle is enough, as during a rotation": {chain: directPEM, roots: []*x509.Certificate{other, root}},
		"a private key block is refused as a certificate bundle":  {chain: []byte("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n"), roots: []*x509.Certificate{root}, wantErr: `is "RSA PRIVATE KEY", want CERTIFICATE`},
		"garbage is refused":                                      {chain: []byte("not pem"), roots: []*x509.Certificate{root}, wantErr: "no PEM certificate found"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := VerifyChain(tc.chain, tc.roots, time.Now())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFingerprintIsSHA256OfDER(t *testing.T) {
	t.Parallel()
	c, _, _ := newCert(t, "root", true, nil, nil)
	if fp := Fingerprint(c); len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Errorf("fingerprint %q is not 64 lowercase hex digits", fp)
	}
}

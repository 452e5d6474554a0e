package certinfo

import (
	"crypto/ecdsa"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/relay-pki/relay-pki/internal/testpki"
)

func newCert(t *testing.T, cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	var p *testpki.Cert
	if parent != nil {
		p = &testpki.Cert{Cert: parent, Key: parentKey}
	}
	c := testpki.MustIssue(t, cn, isCA, p, testpki.Options{})
	return c.Cert, c.Key, c.PEM
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

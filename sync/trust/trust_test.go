package trust

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

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func issue(t *testing.T, cn string, isCA bool, parent *ca) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestVerify(t *testing.T) {
	t.Parallel()
	root := issue(t, "relay root", true, nil)
	other := issue(t, "other root", true, nil)
	inter := issue(t, "intermediate", true, root)
	server := issue(t, "server", false, root)
	signing := issue(t, "signing", true, root)
	viaInter := issue(t, "server via intermediate", false, inter)
	leaves := []Leaf{{"relay-server-tls-secret", server.pem}, {"relay-tls-signing-secret", signing.pem}}

	tests := map[string]struct {
		source       []byte
		leaves       []Leaf
		wantAnchors  int
		wantWarnings int
		wantErr      string
	}{
		"the root that signed both certificates is published": {
			source: root.pem, leaves: leaves, wantAnchors: 1,
		},
		"a duplicated root is published once": {
			source: cat(root.pem, root.pem), leaves: leaves, wantAnchors: 1,
		},
		"two roots, as during a rotation, are both published": {
			source: cat(other.pem, root.pem), leaves: leaves, wantAnchors: 2,
		},
		"a bundle the server certificate does not chain to is refused": {
			source: other.pem, leaves: leaves, wantErr: "relay-server-tls-secret:",
		},
		"a leaf certificate in the source is refused": {
			source: cat(root.pem, server.pem), leaves: leaves, wantErr: "certificate 2 (CN=server) is not a CA",
		},
		"garbage is refused": {
			source: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), leaves: leaves, wantErr: "trust source:",
		},
		"an empty source is refused": {
			source: nil, leaves: leaves, wantErr: "no PEM certificate found",
		},
		"a private key in the source is refused": {
			source: cat(root.pem, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), leaves: leaves, wantErr: `is "PRIVATE KEY", want CERTIFICATE`,
		},
		"an intermediate used as an anchor is published with a warning": {
			source: inter.pem, leaves: []Leaf{{"server", viaInter.pem}}, wantAnchors: 1, wantWarnings: 1,
		},
		"a certificate not issued yet blocks publishing": {
			source: root.pem, leaves: []Leaf{{"relay-server-tls-secret", nil}}, wantErr: "relay-server-tls-secret has no certificate yet",
		},
		"an oversized source is refused with its size": {
			source: make([]byte, MaxBundleSize+1), wantErr: "larger than the 1048576 byte limit",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := Verify(tc.source, tc.leaves, time.Now())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Anchors) != tc.wantAnchors || len(b.Warnings) != tc.wantWarnings {
				t.Errorf("anchors=%d warnings=%v, want %d and %d", len(b.Anchors), b.Warnings, tc.wantAnchors, tc.wantWarnings)
			}
			if strings.Count(string(b.PEM), "BEGIN CERTIFICATE") != tc.wantAnchors {
				t.Errorf("PEM has %d blocks", strings.Count(string(b.PEM), "BEGIN CERTIFICATE"))
			}
			if len(b.Hash()) != 64 {
				t.Errorf("hash %q", b.Hash())
			}
		})
	}
}

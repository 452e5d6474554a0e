package trust

import (
	"strings"
	"testing"
	"time"

	"github.com/relay-pki/relay-pki/internal/testpki"
)

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestVerify(t *testing.T) {
	t.Parallel()
	root := testpki.MustIssue(t, "relay root", true, nil, testpki.Options{})
	other := testpki.MustIssue(t, "other root", true, nil, testpki.Options{})
	inter := testpki.MustIssue(t, "intermediate", true, root, testpki.Options{})
	server := testpki.MustIssue(t, "server", false, root, testpki.Options{})
	signing := testpki.MustIssue(t, "signing", true, root, testpki.Options{})
	viaInter := testpki.MustIssue(t, "server via intermediate", false, inter, testpki.Options{})
	leaves := []Leaf{{"relay-server-tls-secret", server.PEM}, {"relay-tls-signing-secret", signing.PEM}}

	tests := map[string]struct {
		source       []byte
		leaves       []Leaf
		wantAnchors  int
		wantWarnings int
		wantErr      string
	}{
		"the root that signed both certificates is published": {
			source: root.PEM, leaves: leaves, wantAnchors: 1,
		},
		"a duplicated root is published once": {
			source: cat(root.PEM, root.PEM), leaves: leaves, wantAnchors: 1,
		},
		"two roots, as during a rotation, are both published": {
			source: cat(other.PEM, root.PEM), leaves: leaves, wantAnchors: 2,
		},
		"a bundle the server certificate does not chain to is refused": {
			source: other.PEM, leaves: leaves, wantErr: "relay-server-tls-secret:",
		},
		"a leaf certificate in the source is refused": {
			source: cat(root.PEM, server.PEM), leaves: leaves, wantErr: "certificate 2 (CN=server) is not a CA",
		},
		"garbage is refused": {
			source: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), leaves: leaves, wantErr: "trust source:",
		},
		"an empty source is refused": {
			source: nil, leaves: leaves, wantErr: "no PEM certificate found",
		},
		"a private key in the source is refused": {
			source: cat(root.PEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")), leaves: leaves, wantErr: `is "PRIVATE KEY", want CERTIFICATE`,
		},
		"an intermediate used as an anchor is published with a warning": {
			source: inter.PEM, leaves: []Leaf{{"server", viaInter.PEM}}, wantAnchors: 1, wantWarnings: 1,
		},
		"a certificate not issued yet blocks publishing": {
			source: root.PEM, leaves: []Leaf{{"relay-server-tls-secret", nil}}, wantErr: "relay-server-tls-secret has no certificate yet",
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

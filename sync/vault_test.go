package sync

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/testpki"
)

func TestVaultTrustKeepsOnlyTheSelfSignedRootOfTheMountsChain(t *testing.T) {
	t.Parallel()
	root := testpki.MustIssue(t, "vault-root", true, nil, testpki.Options{})
	intermediate := testpki.MustIssue(t, "vault-intermediate", true, root, testpki.Options{})
	tests := map[string]struct {
		body     []byte
		status   int
		wantRoot bool
		wantErr  string
	}{
		"the chain [intermediate, root] yields the root alone":  {body: append(append([]byte{}, intermediate.PEM...), root.PEM...), status: 200, wantRoot: true},
		"a chain without its root is refused, naming the mount": {body: intermediate.PEM, status: 200, wantErr: "mount pki_int holds no self-signed root"},
		"an error status is reported with the mount":            {status: 403, wantErr: "read Vault's CA chain of mount pki_int: 403 Forbidden"},
		"garbage is reported, not published":                    {body: []byte("<html>"), status: 200, wantErr: "Vault's CA chain of mount pki_int"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var gotPath, gotNS string
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotPath, gotNS = r.URL.Path, r.Header.Get("X-Vault-Namespace")
				w.WriteHeader(tc.status)
				_, _ = w.Write(tc.body)
			}))
			defer srv.Close()
			caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
			vt, err := NewVaultTrust(&config.VaultIssuer{Server: srv.URL, Path: "pki_int/sign/relay-server", Namespace: "team-a", CABundle: string(caPEM)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := vt.Roots(t.Context())
			if gotPath != "/v1/pki_int/ca_chain" || gotNS != "team-a" {
				t.Errorf("asked %s (namespace %q), want /v1/pki_int/ca_chain in team-a", gotPath, gotNS)
			}
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(got, root.PEM):
				t.Errorf("roots = %q, want the root only", got)
			}
		})
	}
}

func TestVaultTrustRefusesACABundleWithoutCertificates(t *testing.T) {
	t.Parallel()
	if _, err := NewVaultTrust(&config.VaultIssuer{CABundle: "not pem"}); err == nil || !strings.Contains(err.Error(), "issuer.vault.caBundle") {
		t.Errorf("err = %v, want it to name issuer.vault.caBundle", err)
	}
}

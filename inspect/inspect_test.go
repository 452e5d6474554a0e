package inspect

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

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

type keyPair struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// issue makes a certificate valid for days from now, signed by parent (self-
// signed when nil).
func issue(t *testing.T, tmpl *x509.Certificate, parent *keyPair, days int) *keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(time.Duration(days) * 24 * time.Hour)
	tmpl.BasicConstraintsValid = true
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	return &keyPair{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
}

type pki struct {
	root, server, signing *keyPair
}

func newPKI(t *testing.T, serverMod func(*x509.Certificate), serverDays int) pki {
	t.Helper()
	root := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "*.gloo-mesh", Organization: []string{"relay-root"}}, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, 3650)
	serverTmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "*.gloo-mesh"}, DNSNames: []string{"*.gloo-mesh"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if serverMod != nil {
		serverMod(serverTmpl)
	}
	server := issue(t, serverTmpl, root, serverDays)
	signing := issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "*.gloo-mesh"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, root, 365)
	return pki{root, server, signing}
}

func sec(ns, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func readyCert(name, secret string) cmapi.Certificate {
	return cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
		Spec:       cmapi.CertificateSpec{SecretName: secret, IssuerRef: cmmeta.IssuerReference{Name: "relay-root-ca"}},
		Status: cmapi.CertificateStatus{Conditions: []cmapi.CertificateCondition{
			{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue, ObservedGeneration: 1},
		}},
	}
}

// healthy is a snapshot of a management cluster and one workload cluster in
// sync.
func healthy(t *testing.T, p pki) *Snapshot {
	t.Helper()
	cfg := config.Default()
	ns := cfg.Namespace
	token := []byte("0123456789012345678901234567890123456789abc")
	bundle := map[string][]byte{"ca.crt": p.root.certPEM}
	return &Snapshot{
		Config: cfg, Taken: now, Roots: issuer.SteadyRoots(0),
		Certificates: []cmapi.Certificate{
			readyCert("relay-root", cfg.Root.SecretName),
			readyCert("relay-server-tls", cfg.Server.SecretName),
			readyCert("relay-tls-signing", cfg.Signing.SecretName),
		},
		Management: map[string]*corev1.Secret{
			cfg.Root.SecretName:          sec(ns, cfg.Root.SecretName, map[string][]byte{"tls.crt": p.root.certPEM, "tls.key": p.root.keyPEM}),
			cfg.Server.SecretName:        sec(ns, cfg.Server.SecretName, map[string][]byte{"tls.crt": p.server.certPEM, "tls.key": p.server.keyPEM, "ca.crt": p.root.certPEM}),
			cfg.Signing.SecretName:       sec(ns, cfg.Signing.SecretName, map[string][]byte{"tls.crt": p.signing.certPEM, "tls.key": p.signing.keyPEM, "ca.crt": p.root.certPEM}),
			cfg.TrustBundle.SecretName:   sec(ns, cfg.TrustBundle.SecretName, bundle),
			cfg.IdentityToken.SecretName: sec(ns, cfg.IdentityToken.SecretName, map[string][]byte{"token": token}),
		},
		Clusters: []Cluster{{
			Name: "workload-1", Registration: "workload-1", Namespace: ns, State: string(relaysync.StateSynced), SyncedAt: now.Format(time.RFC3339),
			Secrets: map[string]*corev1.Secret{
				cfg.TrustBundle.SecretName:   sec(ns, cfg.TrustBundle.SecretName, map[string][]byte{"ca.crt": p.root.certPEM}),
				cfg.IdentityToken.SecretName: sec(ns, cfg.IdentityToken.SecretName, map[string][]byte{"token": token}),
			},
		}},
	}
}

func problems(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		if f.Severity != OK {
			out = append(out, f.String())
		}
	}
	return out
}

func TestVerify(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		serverMod  func(*x509.Certificate)
		serverDays int
		edit       func(s *Snapshot)
		hosts      []string
		// want are substrings of the WARNING and ERROR lines, one each, in order.
		want []string
	}{
		"a healthy setup has no findings but OK": {},
		"a tampered ca.crt in a workload cluster is an error naming the cluster": {
			edit: func(s *Snapshot) {
				s.Clusters[0].Secrets["relay-root-tls-secret"].Data["ca.crt"] = []byte("tampered")
			},
			want: []string{"ERROR   workload-1 gloo-mesh/relay-root-tls-secret: ca.crt (sha256 "},
		},
		"a private key in a workload cluster is an error": {
			edit: func(s *Snapshot) {
				s.Clusters[0].Secrets["relay-root-tls-secret"].Data["tls.key"] = []byte("-----BEGIN EC PRIVATE KEY-----")
			},
			want: []string{`ERROR   workload-1 gloo-mesh/relay-root-tls-secret: key "tls.key" holds private key material`, `WARNING workload-1 gloo-mesh/relay-root-tls-secret: unexpected keys [tls.key]`},
		},
		"a stale token in a workload cluster is an error": {
			edit: func(s *Snapshot) {
				s.Clusters[0].Secrets["relay-identity-token-secret"].Data["token"] = []byte("old")
			},
			want: []string{"ERROR   workload-1 gloo-mesh/relay-identity-token-secret: token differs from the management cluster's"},
		},
		"a server certificate without clientAuth is an error": {
			serverMod: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} },
			want:      []string{"ERROR   management gloo-mesh/relay-server-tls-secret: extended key usage clientAuth is missing"},
		},
		"a relay host the server certificate does not cover is an error": {
			hosts: []string{"relay.example.com"},
			want:  []string{`do not cover the relay host "relay.example.com"`},
		},
		"a server certificate within the warning threshold is a warning": {
			serverDays: 20,
			want:       []string{"WARNING management gloo-mesh/relay-server-tls-secret: CN=*.gloo-mesh expires in 20 days (warning threshold 30)"},
		},
		"a server certificate within the error threshold is an error": {
			serverDays: 3,
			want:       []string{"ERROR   management gloo-mesh/relay-server-tls-secret: CN=*.gloo-mesh expires in 3 days (error threshold 7)"},
		},
		"an unreadable workload cluster is an error naming it": {
			edit: func(s *Snapshot) { s.Clusters[0].Err = errForbidden{} },
			want: []string{"ERROR   workload-1 gloo-mesh: cannot read the cluster with its registration's credentials: forbidden"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			days := tc.serverDays
			if days == 0 {
				days = 365
			}
			s := healthy(t, newPKI(t, tc.serverMod, days))
			if tc.edit != nil {
				tc.edit(s)
			}
			got := problems(Verify(s, Thresholds{WarnDays: 30, ErrorDays: 7, RelayHosts: tc.hosts}))
			if len(got) != len(tc.want) {
				t.Fatalf("findings:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("finding %d = %q, want it to contain %q", i, got[i], tc.want[i])
				}
			}
			for _, f := range got {
				if strings.Contains(f, string(s.Token())) || strings.Contains(f, "BEGIN") {
					t.Errorf("a finding prints secret data: %q", f)
				}
			}
		})
	}
}

type errForbidden struct{}

func (errForbidden) Error() string { return "forbidden" }

func TestStatus(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		edit         func(s *Snapshot)
		wantHealthy  bool
		wantProblems []string
	}{
		"a synced setup is healthy": {wantHealthy: true},
		"a tampered ca.crt is unhealthy even while the controller still says Synced": {
			edit:         func(s *Snapshot) { s.Clusters[0].Secrets["relay-root-tls-secret"].Data["ca.crt"] = []byte("tampered") },
			wantProblems: []string{"cluster workload-1: gloo-mesh/relay-root-tls-secret ca.crt does not equal the management bundle"},
		},
		"an unreachable cluster is unhealthy": {
			edit: func(s *Snapshot) {
				s.Clusters[0].State, s.Clusters[0].Message = string(relaysync.StateUnreachable), "dial tcp: connection refused"
			},
			wantProblems: []string{"cluster workload-1 is Unreachable: dial tcp: connection refused"},
		},
		"a certificate not Ready is unhealthy": {
			edit:         func(s *Snapshot) { s.Certificates[1].Status.Conditions[0].Status = cmmeta.ConditionFalse },
			wantProblems: []string{"Certificate relay-server-tls is not Ready: NotReady "},
		},
		"a missing Certificate says to install": {
			edit: func(s *Snapshot) {
				s.Certificates = s.Certificates[:2]
				s.Missing = []string{"relay-tls-signing"}
			},
			wantProblems: []string{"Certificate gloo-mesh/relay-tls-signing does not exist (run relay-pki install)"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := healthy(t, newPKI(t, nil, 365))
			if tc.edit != nil {
				tc.edit(s)
			}
			st := StatusOf(s)
			if st.Healthy != tc.wantHealthy {
				t.Errorf("healthy = %t, want %t; problems %q", st.Healthy, tc.wantHealthy, st.Problems)
			}
			if strings.Join(st.Problems, "\n") != strings.Join(tc.wantProblems, "\n") {
				t.Errorf("problems:\n%q\nwant:\n%q", st.Problems, tc.wantProblems)
			}
			var b strings.Builder
			if err := st.WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), "workload-1") {
				t.Errorf("table lacks the cluster:\n%s", b.String())
			}
		})
	}
}

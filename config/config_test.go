package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

func TestDefaultsMatchGoldenFile(t *testing.T) {
	t.Parallel()
	got, err := yaml.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "defaults.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./config -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("defaults differ from %s (-want +got); if intended, run go test ./config -update:\n%s", golden, diff)
	}
}

func TestDefaultsAreTheSeedsNames(t *testing.T) {
	t.Parallel()
	c := Default()
	checks := map[string][2]any{
		"namespace":                   {c.Namespace, "gloo-mesh"},
		"server secret":               {c.Server.SecretName, "relay-server-tls-secret"},
		"signing secret":              {c.Signing.SecretName, "relay-tls-signing-secret"},
		"trust bundle secret":         {c.TrustBundle.SecretName, "relay-root-tls-secret"},
		"token secret":                {c.IdentityToken.SecretName, "relay-identity-token-secret"},
		"token key":                   {c.IdentityToken.Key, "token"},
		"root CN":                     {c.Root.CommonName, "*.gloo-mesh"},
		"server CN":                   {c.Server.CommonName, "*.gloo-mesh"},
		"signing CN":                  {c.Signing.CommonName, "*.gloo-mesh"},
		"root O":                      {c.Root.Organization, "relay-root"},
		"server O":                    {c.Server.Organization, "relay-server-tls"},
		"signing O":                   {c.Signing.Organization, "relay-tls-signing"},
		"root key":                    {c.Root.PrivateKey, PrivateKey{RSA, 4096}},
		"server key":                  {c.Server.PrivateKey, PrivateKey{RSA, 2048}},
		"signing key":                 {c.Signing.PrivateKey, PrivateKey{RSA, 2048}},
		"root lifetime (seed: 3650d)": {c.Root.Duration.Duration, 3650 * 24 * time.Hour},
		"issuer mode":                 {c.Issuer.Mode(), ModeSelfSigned},
		"istio host":                  {c.IstioIngress.Host, "enterprise-networking.gloo-mesh"},
		"istio destination":           {c.IstioIngress.DestinationHost, "enterprise-networking.gloo-mesh.svc.cluster.local"},
		"istio target port":           {c.IstioIngress.TargetPort, int32(9900)},
	}
	for name, c := range checks {
		if diff := cmp.Diff(c[1], c[0]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if errs := Validate(c, nil); len(errs) != 0 {
		t.Errorf("the defaults do not validate: %v", errs)
	}
}

func TestDefaultingFollowsWhatTheUserSet(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in    string
		check func(t *testing.T, c *Config)
	}{
		"a shorter duration without renewBefore renews at two thirds, as cert-manager does": {
			in: "server: {duration: 3h}",
			check: func(t *testing.T, c *Config) {
				if got := c.Server.RenewBefore.Duration; got != time.Hour {
					t.Errorf("server.renewBefore = %s, want 1h", got)
				}
			},
		},
		"ECDSA without a size gets P-256": {
			in: "server: {privateKey: {algorithm: ECDSA}}",
			check: func(t *testing.T, c *Config) {
				if c.Server.PrivateKey.Size != 256 {
					t.Errorf("size = %d, want 256", c.Server.PrivateKey.Size)
				}
			},
		},
		"Ed25519 has no size": {
			in: "signing: {privateKey: {algorithm: Ed25519}}",
			check: func(t *testing.T, c *Config) {
				if c.Signing.PrivateKey.Size != 0 {
					t.Errorf("size = %d, want 0", c.Signing.PrivateKey.Size)
				}
			},
		},
		"the root keeps RSA 4096 when only the algorithm is written": {
			in: "root: {privateKey: {algorithm: RSA}}",
			check: func(t *testing.T, c *Config) {
				if c.Root.PrivateKey.Size != 4096 {
					t.Errorf("size = %d, want 4096", c.Root.PrivateKey.Size)
				}
			},
		},
		"the Istio objects follow a changed namespace": {
			in: "namespace: relay",
			check: func(t *testing.T, c *Config) {
				if c.IstioIngress.Namespace != "relay" || c.IstioIngress.Host != "enterprise-networking.relay" ||
					c.IstioIngress.DestinationHost != "enterprise-networking.relay.svc.cluster.local" {
					t.Errorf("istioIngress = %+v", c.IstioIngress)
				}
			},
		},
		"an issuerRef without kind and group is a namespaced cert-manager Issuer": {
			in: "issuer: {issuerRef: {name: corp}}",
			check: func(t *testing.T, c *Config) {
				if r := c.Issuer.IssuerRef; r.Kind != "Issuer" || r.Group != "cert-manager.io" || c.Issuer.SelfSigned != nil {
					t.Errorf("issuer = %+v / %+v", c.Issuer, r)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := Decode([]byte("apiVersion: relay-pki.io/v1alpha1\nkind: Config\n" + tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if err := Complete(c); err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in      string
		wantErr string
	}{
		"an unknown top-level field is named": {
			in:      "apiVersion: relay-pki.io/v1alpha1\nkind: Config\nbogusField: 1\n",
			wantErr: `unknown field "bogusField"`,
		},
		"an unknown nested field is named": {
			in:      "apiVersion: relay-pki.io/v1alpha1\nkind: Config\nserver:\n  privateKey:\n    bits: 2048\n",
			wantErr: `unknown field "server.privateKey.bits"`,
		},
		"a duplicated field is refused": {
			in:      "apiVersion: relay-pki.io/v1alpha1\nkind: Config\nnamespace: a\nnamespace: b\n",
			wantErr: `"namespace" already set`,
		},
		"a duration that is not a Go duration is refused": {
			in:      "apiVersion: relay-pki.io/v1alpha1\nkind: Config\nserver: {duration: 1y}\n",
			wantErr: `time: unknown unit "y" in duration "1y"`,
		},
		"an oversized file is refused with its size": {
			in:      "namespace: " + strings.Repeat("a", MaxFileSize),
			wantErr: "larger than the 1048576 byte limit",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Decode error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCompleteReportsEveryProblem(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte("apiVersion: relay-pki.io/v1alpha1\nkind: Config\nnamespace: Bad_NS\nserver: {duration: 5m}\nroot: {privateKey: {size: 1024}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = Complete(c)
	var invalid *InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("Complete = %v, want an *InvalidError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`namespace: Invalid value: "Bad_NS"`,
		`server.duration: Invalid value: "5m0s": must be at least 1h`,
		`root.privateKey.size: Invalid value: 1024: supported RSA sizes: [2048 3072 4096]`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
}

// mod changes a defaulted configuration; validation cases are built from them.
type mod func(*Config)

func valid(mods ...mod) *Config {
	c := Default()
	for _, m := range mods {
		m(c)
	}
	return c
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestValidate(t *testing.T) {
	t.Parallel()
	vault := func(m func(v *VaultIssuer)) mod {
		return func(c *Config) {
			v := &VaultIssuer{
				Server: "https://vault.example.com:8200", Path: "pki_int/sign/relay", SigningPath: "pki/root/sign-intermediate",
				Auth: VaultAuth{TokenSecretRef: &SecretKeyRef{Name: "vault-token", Key: "token"}},
			}
			if m != nil {
				m(v)
			}
			c.Issuer = Issuer{Vault: v}
			SetDefaults(c)
		}
	}
	tests := map[string]struct {
		cfg  *Config
		want field.ErrorList
	}{
		"the defaults are valid": {cfg: valid()},
		"a missing apiVersion is required": {
			cfg:  valid(func(c *Config) { c.APIVersion = "" }),
			want: field.ErrorList{field.Required(field.NewPath("apiVersion"), `must be "relay-pki.io/v1alpha1"`)},
		},
		"another kind is not supported": {
			cfg:  valid(func(c *Config) { c.Kind = "Cluster" }),
			want: field.ErrorList{field.NotSupported(field.NewPath("kind"), "Cluster", []string{"Config"})},
		},
		"a namespace must be a DNS label": {
			cfg: valid(func(c *Config) { c.Namespace = "gloo.mesh" }),
			want: field.ErrorList{field.Invalid(field.NewPath("namespace"), "gloo.mesh",
				"must not contain dots")},
		},
		"a duration under an hour is refused": {
			cfg:  valid(func(c *Config) { c.Server.Duration = dur(5 * time.Minute); c.Server.RenewBefore = dur(4 * time.Minute) }),
			want: field.ErrorList{field.Invalid(field.NewPath("server", "duration"), "5m0s", "must be at least 1h"), field.Invalid(field.NewPath("server", "renewBefore"), "4m0s", "must be at least 5m")},
		},
		"renewBefore must be shorter than the duration": {
			cfg:  valid(func(c *Config) { c.Signing.Duration = dur(2 * time.Hour); c.Signing.RenewBefore = dur(2 * time.Hour) }),
			want: field.ErrorList{field.Invalid(field.NewPath("signing", "renewBefore"), "2h0m0s", "must be less than duration (2h0m0s)")},
		},
		"a certificate outliving the root is refused": {
			cfg: valid(func(c *Config) { c.Server.Duration = dur(20 * 365 * 24 * time.Hour) }),
			want: field.ErrorList{field.Invalid(field.NewPath("server", "duration"), "175200h0m0s",
				"must not exceed root.duration (87600h0m0s): cert-manager would cut the certificate short at the root's expiry")},
		},
		"RSA 1024 is refused": {
			cfg:  valid(func(c *Config) { c.Root.PrivateKey.Size = 1024 }),
			want: field.ErrorList{field.Invalid(field.NewPath("root", "privateKey", "size"), 1024, "supported RSA sizes: [2048 3072 4096]")},
		},
		"ECDSA P-521 is refused because cert-manager's CA issuer chains are kept to P-384": {
			cfg:  valid(func(c *Config) { c.Server.PrivateKey = PrivateKey{ECDSA, 521} }),
			want: field.ErrorList{field.Invalid(field.NewPath("server", "privateKey", "size"), 521, "supported ECDSA sizes: [256 384]")},
		},
		"Ed25519 with a size is refused": {
			cfg:  valid(func(c *Config) { c.Server.PrivateKey = PrivateKey{Ed25519, 256} }),
			want: field.ErrorList{field.Invalid(field.NewPath("server", "privateKey", "size"), 256, "must be unset for Ed25519")},
		},
		"an unknown key algorithm is refused": {
			cfg:  valid(func(c *Config) { c.Server.PrivateKey = PrivateKey{"DSA", 2048} }),
			want: field.ErrorList{field.NotSupported(field.NewPath("server", "privateKey", "algorithm"), KeyAlgorithm("DSA"), []KeyAlgorithm{RSA, ECDSA, Ed25519})},
		},
		"RSA 3072, ECDSA P-384 and Ed25519 are accepted": {
			cfg: valid(func(c *Config) {
				c.Root.PrivateKey = PrivateKey{RSA, 3072}
				c.Server.PrivateKey = PrivateKey{ECDSA, 384}
				c.Signing.PrivateKey = PrivateKey{Ed25519, 0}
			}),
		},
		"two certificates cannot share a secret": {
			cfg:  valid(func(c *Config) { c.Signing.SecretName = "relay-server-tls-secret" }),
			want: field.ErrorList{field.Duplicate(field.NewPath("signing", "secretName"), "relay-server-tls-secret")},
		},
		"the token cannot be written into the trust bundle secret": {
			cfg:  valid(func(c *Config) { c.IdentityToken.SecretName = "relay-root-tls-secret" }),
			want: field.ErrorList{field.Duplicate(field.NewPath("identityToken", "secretName"), "relay-root-tls-secret")},
		},
		"a token key must be a valid Secret key": {
			cfg:  valid(func(c *Config) { c.IdentityToken.Key = "to ken" }),
			want: field.ErrorList{field.Invalid(field.NewPath("identityToken", "key"), "to ken", "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")},
		},
		"an extra DNS name may be a wildcard but not an IP-like garbage": {
			cfg:  valid(func(c *Config) { c.DNSNames = []string{"*.relay.example.com", "relay_host"} }),
			want: field.ErrorList{field.Invalid(field.NewPath("dnsNames").Index(1), "relay_host", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")},
		},
		"two issuer modes at once are refused": {
			cfg:  valid(func(c *Config) { c.Issuer.IssuerRef = &IssuerRef{Name: "x", Kind: "Issuer", Group: "cert-manager.io"} }),
			want: field.ErrorList{field.Forbidden(field.NewPath("issuer"), "exactly one of selfSigned, issuerRef or vault may be set")},
		},
		"an out-of-tree issuer is accepted by group and kind": {
			cfg: valid(func(c *Config) {
				c.Issuer = Issuer{IssuerRef: &IssuerRef{Name: "corp-ca", Kind: "GoogleCASIssuer", Group: "cas-issuer.jetstack.io"}}
			}),
		},
		"a cert-manager.io issuerRef must be Issuer or ClusterIssuer": {
			cfg: valid(func(c *Config) {
				c.Issuer = Issuer{IssuerRef: &IssuerRef{Name: "x", Kind: "AWSPCAIssuer", Group: "cert-manager.io"}}
			}),
			want: field.ErrorList{field.NotSupported(field.NewPath("issuer", "issuerRef", "kind"), "AWSPCAIssuer", []string{"Issuer", "ClusterIssuer"})},
		},
		"an issuerRef needs a name": {
			cfg: valid(func(c *Config) {
				c.Issuer = Issuer{IssuerRef: &IssuerRef{Kind: "ClusterIssuer", Group: "cert-manager.io"}}
			}),
			want: field.ErrorList{field.Required(field.NewPath("issuer", "issuerRef", "name"), "name of the issuer that signs the server and signing certificates")},
		},
		"the root is not validated when an external issuer signs": {
			cfg: valid(func(c *Config) {
				c.Root.PrivateKey.Size = 1024
				c.Issuer = Issuer{IssuerRef: &IssuerRef{Name: "vault", Kind: "ClusterIssuer", Group: "cert-manager.io"}}
			}),
		},
		"a complete vault issuer is valid": {cfg: valid(vault(nil))},
		"vault must be reached over https": {
			cfg: valid(vault(func(v *VaultIssuer) { v.Server = "http://vault:8200" })),
			want: field.ErrorList{field.Invalid(field.NewPath("issuer", "vault", "server"), "http://vault:8200",
				"must be an https:// URL with a host: the Vault token and CSRs must not cross the network in clear text")},
		},
		"a vault role path cannot sign the CA-enabled signing certificate": {
			cfg: valid(vault(func(v *VaultIssuer) { v.SigningPath = "" })),
			want: field.ErrorList{field.Required(field.NewPath("issuer", "vault", "signingPath"),
				`the signing certificate is a CA, and path "pki_int/sign/relay" is a Vault role endpoint that only issues leaf certificates: set a <mount>/root/sign-intermediate path`)},
		},
		"a vault caBundle must hold certificates": {
			cfg:  valid(vault(func(v *VaultIssuer) { v.CABundle = "not pem" })),
			want: field.ErrorList{field.Invalid(field.NewPath("issuer", "vault", "caBundle"), "<PEM>", "no PEM certificate found")},
		},
		"vault needs exactly one auth method": {
			cfg: valid(vault(func(v *VaultIssuer) {
				v.Auth.AppRole = &VaultAppRole{Path: "approle", RoleID: "r", SecretRef: SecretKeyRef{Name: "s", Key: "k"}}
			})),
			want: field.ErrorList{field.Forbidden(field.NewPath("issuer", "vault", "auth"), "exactly one of tokenSecretRef, appRole or kubernetes may be set")},
		},
		"vault without auth is refused": {
			cfg:  valid(vault(func(v *VaultIssuer) { v.Auth = VaultAuth{} })),
			want: field.ErrorList{field.Required(field.NewPath("issuer", "vault", "auth"), "one of tokenSecretRef, appRole or kubernetes")},
		},
		"vault kubernetes auth needs a role and a service account": {
			cfg: valid(vault(func(v *VaultIssuer) {
				v.Auth = VaultAuth{Kubernetes: &VaultKubernetesAuth{MountPath: "/v1/auth/kubernetes"}}
			})),
			want: field.ErrorList{
				field.Required(field.NewPath("issuer", "vault", "auth", "kubernetes", "role"), "Vault role bound to the service account"),
				field.Required(field.NewPath("issuer", "vault", "auth", "kubernetes", "serviceAccountRef"), "or secretRef"),
			},
		},
		"vault appRole needs its secret key": {
			cfg: valid(vault(func(v *VaultIssuer) {
				v.Auth = VaultAuth{AppRole: &VaultAppRole{Path: "approle", RoleID: "r", SecretRef: SecretKeyRef{Name: "approle"}}}
			})),
			want: field.ErrorList{field.Required(field.NewPath("issuer", "vault", "auth", "appRole", "secretRef", "key"), "")},
		},
		"the istio host must be covered by the server certificate": {
			cfg: valid(func(c *Config) { c.IstioIngress.Enabled = true; c.IstioIngress.Host = "relay.example.com" }),
			want: field.ErrorList{field.Invalid(field.NewPath("istioIngress", "host"), "relay.example.com",
				"not covered by the server certificate's DNS names [*.gloo-mesh]: add it to dnsNames")},
		},
		"an extra DNS name covers the istio host": {
			cfg: valid(func(c *Config) {
				c.IstioIngress.Enabled = true
				c.IstioIngress.Host = "relay.example.com"
				c.DNSNames = []string{"relay.example.com"}
			}),
		},
		"istio ports must be valid": {
			cfg:  valid(func(c *Config) { c.IstioIngress.Enabled = true; c.IstioIngress.TargetPort = 70000 }),
			want: field.ErrorList{field.Invalid(field.NewPath("istioIngress", "targetPort"), int32(70000), "must be between 1 and 65535, inclusive")},
		},
		"an unknown deletion policy is refused": {
			cfg:  valid(func(c *Config) { c.Sync.DeletionPolicy = "Orphan" }),
			want: field.ErrorList{field.NotSupported(field.NewPath("sync", "deletionPolicy"), DeletionPolicy("Orphan"), []DeletionPolicy{DeletionPolicyRetain, DeletionPolicyDelete})},
		},
		"a resync under a minute is refused": {
			cfg:  valid(func(c *Config) { c.Sync.ResyncPeriod = dur(10 * time.Second) }),
			want: field.ErrorList{field.Invalid(field.NewPath("sync", "resyncPeriod"), "10s", "must be at least 1m")},
		},
		"a trust source is refused with the self-signed root": {
			cfg: valid(func(c *Config) {
				c.TrustBundle.Source = &TrustSource{SecretRef: &SecretKeyRef{Name: "corp", Key: "ca.crt"}}
			}),
			want: field.ErrorList{field.Forbidden(field.NewPath("trustBundle", "source"), "the self-signed root is the trust anchor; a trust source only applies with issuerRef or vault")},
		},
		"a trust source ConfigMap is accepted with an external issuer": {
			cfg: valid(func(c *Config) {
				c.Issuer = Issuer{IssuerRef: &IssuerRef{Name: "corp", Kind: "ClusterIssuer", Group: "cert-manager.io"}}
				c.TrustBundle.Source = &TrustSource{ConfigMapRef: &SecretKeyRef{Name: "corp-roots", Key: "roots.pem"}}
			}),
		},
		"a trust source needs exactly one reference": {
			cfg: valid(func(c *Config) {
				c.Issuer = Issuer{IssuerRef: &IssuerRef{Name: "corp", Kind: "ClusterIssuer", Group: "cert-manager.io"}}
				c.TrustBundle.Source = &TrustSource{}
			}),
			want: field.ErrorList{field.Required(field.NewPath("trustBundle", "source"), "secretRef or configMapRef")},
		},
		"a disabled istio ingress is not validated": {
			cfg: valid(func(c *Config) { c.IstioIngress.TargetPort = 70000 }),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := Validate(tc.cfg, nil)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		names []string
		host  string
		want  bool
	}{
		"a wildcard covers one label":         {[]string{"*.gloo-mesh"}, "enterprise-networking.gloo-mesh", true},
		"a wildcard does not cover two":       {[]string{"*.gloo-mesh"}, "a.enterprise-networking.gloo-mesh", false},
		"a wildcard does not cover its apex":  {[]string{"*.gloo-mesh"}, "gloo-mesh", false},
		"an exact name matches in any case":   {[]string{"Relay.Example.com"}, "relay.example.COM", true},
		"an unrelated name does not match":    {[]string{"relay.example.com"}, "relay.example.org", false},
		"any of several names is enough":      {[]string{"a.b", "*.gloo-mesh"}, "x.gloo-mesh", true},
		"an empty first label does not match": {[]string{"*.gloo-mesh"}, ".gloo-mesh", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := Covers(tc.names, tc.host); got != tc.want {
				t.Errorf("Covers(%v, %q) = %v, want %v", tc.names, tc.host, got, tc.want)
			}
		})
	}
}

func TestVaultMountIsThePathBeforeItsSigningEndpoint(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"pki_int/sign/relay-server":      "pki_int",
		"/pki/int/issue/relay":           "pki/int",
		"pki_int/root/sign-intermediate": "pki_int",
		"pki_int/sign-verbatim/relay":    "pki_int",
		"teams/a/pki/sign-intermediate":  "teams/a/pki",
		"pki_int":                        "pki_int",
	} {
		if got := (&VaultIssuer{Path: path}).Mount(); got != want {
			t.Errorf("Mount(%q) = %q, want %q", path, got, want)
		}
	}
}

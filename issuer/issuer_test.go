package issuer_test

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/manifest"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

// cfg builds a completed configuration from small modifiers.
func cfg(t *testing.T, mods ...func(*config.Config)) *config.Config {
	t.Helper()
	c := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	for _, m := range mods {
		m(c)
	}
	if err := config.Complete(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func withIssuerRef(name, kind, group string) func(*config.Config) {
	return func(c *config.Config) {
		c.Issuer = config.Issuer{IssuerRef: &config.IssuerRef{Name: name, Kind: kind, Group: group}}
	}
}

func withVault(c *config.Config) {
	c.Issuer = config.Issuer{Vault: &config.VaultIssuer{
		Server:      "https://vault.example.com:8200",
		Path:        "pki_int/sign/relay-server",
		SigningPath: "pki_int/root/sign-intermediate",
		Auth: config.VaultAuth{Kubernetes: &config.VaultKubernetesAuth{
			Role: "relay-pki", ServiceAccountRef: &config.ServiceAccountRef{Name: "relay-pki-vault"},
		}},
	}}
}

func withIstio(c *config.Config) { c.IstioIngress.Enabled = true }

func modes(t *testing.T) map[string]*config.Config {
	return map[string]*config.Config{
		"selfsigned":         cfg(t),
		"issuerref":          cfg(t, withIssuerRef("vault", "ClusterIssuer", "")),
		"vault":              cfg(t, withVault),
		"selfsigned-istio":   cfg(t, withIstio),
		"out-of-tree-issuer": cfg(t, withIssuerRef("corp-ca", "GoogleCASIssuer", "cas-issuer.jetstack.io")),
		"ecdsa-and-ed25519": cfg(t, func(c *config.Config) {
			c.Server.PrivateKey = config.PrivateKey{Algorithm: config.ECDSA}
			c.Signing.PrivateKey = config.PrivateKey{Algorithm: config.Ed25519}
		}),
		"extra-dns-names-ns": cfg(t, func(c *config.Config) { c.Namespace = "relay"; c.DNSNames = []string{"relay.example.com"} }),
		"vault-one-path-token": cfg(t, func(c *config.Config) {
			withVault(c)
			v := c.Issuer.Vault
			v.Path = "pki_int/sign-verbatim"
			v.SigningPath = ""
			v.Auth = config.VaultAuth{TokenSecretRef: &config.SecretKeyRef{Name: "vault-token", Key: "token"}}
		}),
	}
}

func TestRenderedObjectsMatchGoldenFiles(t *testing.T) {
	t.Parallel()
	for name, c := range modes(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := manifest.WriteYAML(&buf, issuer.Build(c)); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./issuer -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("%s differs (-want +got); if intended, run go test ./issuer -update:\n%s", golden, diff)
			}
		})
	}
}

// TestRenderedYAMLDecodesStrictlyWithCertManagersScheme reads the printed
// YAML back the way an API server would: with cert-manager's own types and
// no unknown or duplicate field allowed.
func TestRenderedYAMLDecodesStrictlyWithCertManagersScheme(t *testing.T) {
	t.Parallel()
	scheme := runtime.NewScheme()
	if err := cmapi.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	istio := map[string]bool{"Gateway": true, "VirtualService": true}

	for name, c := range modes(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := manifest.WriteYAML(&buf, issuer.Build(c)); err != nil {
				t.Fatal(err)
			}
			reader := utilyaml.NewYAMLReader(bufio.NewReader(&buf))
			var kinds []string
			for {
				doc, err := reader.Read()
				if err != nil {
					break
				}
				if len(bytes.TrimSpace(doc)) == 0 || string(bytes.TrimSpace(doc)) == "---" {
					continue
				}
				var probe unstructured.Unstructured
				js, err := yaml.YAMLToJSON(doc)
				if err != nil {
					t.Fatal(err)
				}
				if err := probe.UnmarshalJSON(js); err != nil {
					t.Fatal(err)
				}
				if istio[probe.GetKind()] {
					if probe.GroupVersionKind().GroupVersion() != (schema.GroupVersion{Group: "networking.istio.io", Version: "v1beta1"}) {
						t.Errorf("%s has apiVersion %s", probe.GetKind(), probe.GetAPIVersion())
					}
					kinds = append(kinds, probe.GetKind())
					continue
				}
				obj, gvk, err := strict.Decode(doc, nil, nil)
				if err != nil {
					t.Fatalf("cert-manager's scheme refuses a rendered object: %v\n%s", err, doc)
				}
				if gvk.Group != cmapi.SchemeGroupVersion.Group {
					t.Errorf("unexpected group %s", gvk)
				}
				if o, ok := obj.(client.Object); !ok || o.GetNamespace() != c.Namespace {
					t.Errorf("%s is not in namespace %s", gvk.Kind, c.Namespace)
				}
				kinds = append(kinds, gvk.Kind)
			}
			if len(kinds) != len(issuer.Build(c)) {
				t.Errorf("decoded %d objects %v, rendered %d", len(kinds), kinds, len(issuer.Build(c)))
			}
		})
	}
}

func TestSelfSignedModeHasTheSeedsProperties(t *testing.T) {
	t.Parallel()
	objs := issuer.Build(cfg(t))
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName())
	}
	wantKinds := []string{"Issuer/relay-selfsigned", "Certificate/relay-root", "Issuer/relay-root-ca", "Certificate/relay-server-tls", "Certificate/relay-tls-signing"}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Fatalf("objects in apply order (-want +got):\n%s", diff)
	}

	if objs[0].(*cmapi.Issuer).Spec.SelfSigned == nil {
		t.Error("the bootstrap issuer is not SelfSigned")
	}
	root := objs[1].(*cmapi.Certificate)
	if !root.Spec.IsCA || root.Spec.PrivateKey.Algorithm != cmapi.RSAKeyAlgorithm || root.Spec.PrivateKey.Size != 4096 ||
		root.Spec.PrivateKey.RotationPolicy != cmapi.RotationPolicyNever || root.Spec.IssuerRef.Name != "relay-selfsigned" {
		t.Errorf("root spec = %+v, want isCA, RSA 4096, rotationPolicy Never, issued by relay-selfsigned", root.Spec)
	}
	if ca := objs[2].(*cmapi.Issuer).Spec.CA; ca == nil || ca.SecretName != root.Spec.SecretName {
		t.Errorf("CA issuer = %+v, want one on the root's secret %s", ca, root.Spec.SecretName)
	}

	server, signing := objs[3].(*cmapi.Certificate), objs[4].(*cmapi.Certificate)
	seedLeaf := []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageContentCommitment, cmapi.UsageServerAuth, cmapi.UsageClientAuth}
	for _, tc := range []struct {
		cert    *cmapi.Certificate
		secret  string
		org     string
		isCA    bool
		usages  []cmapi.KeyUsage
		roleVal string
	}{
		{server, "relay-server-tls-secret", "relay-server-tls", false, seedLeaf, "server"},
		{signing, "relay-tls-signing-secret", "relay-tls-signing", true, append(slices.Clone(seedLeaf), cmapi.UsageCertSign), "signing"},
	} {
		s := tc.cert.Spec
		if s.SecretName != tc.secret || s.IsCA != tc.isCA || s.CommonName != "*.gloo-mesh" ||
			!slices.Equal(s.DNSNames, []string{"*.gloo-mesh"}) || !slices.Equal(s.Subject.Organizations, []string{tc.org}) ||
			s.PrivateKey.Size != 2048 || s.IssuerRef.Name != "relay-root-ca" {
			t.Errorf("%s spec = %+v", tc.cert.Name, s)
		}
		if diff := cmp.Diff(tc.usages, s.Usages); diff != "" {
			t.Errorf("%s usages (-want +got):\n%s", tc.cert.Name, diff)
		}
		if got := s.SecretTemplate.Labels; got["app.kubernetes.io/managed-by"] != "relay-pki" || got["relay-pki.io/role"] != tc.roleVal {
			t.Errorf("%s secretTemplate labels = %v", tc.cert.Name, got)
		}
	}
}

func TestExternalIssuersSignBothCertificatesAndNoRootIsMade(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		c                      *config.Config
		wantServer, wantSigner string
		wantIssuers            []string
	}{
		"a ClusterIssuer": {
			c:          cfg(t, withIssuerRef("vault", "ClusterIssuer", "")),
			wantServer: "cert-manager.io/ClusterIssuer/vault", wantSigner: "cert-manager.io/ClusterIssuer/vault",
		},
		"an out-of-tree issuer by group and kind": {
			c:          cfg(t, withIssuerRef("corp-ca", "GoogleCASIssuer", "cas-issuer.jetstack.io")),
			wantServer: "cas-issuer.jetstack.io/GoogleCASIssuer/corp-ca", wantSigner: "cas-issuer.jetstack.io/GoogleCASIssuer/corp-ca",
		},
		"vault with a separate path for the CA-enabled signing certificate": {
			c:          cfg(t, withVault),
			wantServer: "cert-manager.io/Issuer/relay-vault", wantSigner: "cert-manager.io/Issuer/relay-vault-signing",
			wantIssuers: []string{"relay-vault:pki_int/sign/relay-server", "relay-vault-signing:pki_int/root/sign-intermediate"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var issuers []string
			refs := map[string]string{}
			for _, o := range issuer.Build(tc.c) {
				switch o := o.(type) {
				case *cmapi.Issuer:
					if o.Spec.Vault == nil {
						t.Errorf("unexpected issuer %s: %+v", o.Name, o.Spec)
						continue
					}
					issuers = append(issuers, o.Name+":"+o.Spec.Vault.Path)
				case *cmapi.Certificate:
					if o.Spec.IsCA && o.Name == issuer.RootCertificateName {
						t.Errorf("a root certificate was rendered in %s mode", tc.c.Issuer.Mode())
					}
					r := o.Spec.IssuerRef
					refs[o.Name] = r.Group + "/" + r.Kind + "/" + r.Name
				}
			}
			if diff := cmp.Diff(tc.wantIssuers, issuers); diff != "" {
				t.Errorf("issuers (-want +got):\n%s", diff)
			}
			if refs["relay-server-tls"] != tc.wantServer || refs["relay-tls-signing"] != tc.wantSigner {
				t.Errorf("issuerRefs = %v, want server %s and signing %s", refs, tc.wantServer, tc.wantSigner)
			}
		})
	}
}

func TestNonRSAKeysDoNotClaimKeyEncipherment(t *testing.T) {
	t.Parallel()
	c := cfg(t, func(c *config.Config) {
		c.Server.PrivateKey = config.PrivateKey{Algorithm: config.ECDSA}
		c.Signing.PrivateKey = config.PrivateKey{Algorithm: config.Ed25519}
	})
	for _, o := range issuer.Build(c) {
		if cert, ok := o.(*cmapi.Certificate); ok && slices.Contains(cert.Spec.Usages, cmapi.UsageKeyEncipherment) && cert.Spec.PrivateKey.Algorithm != cmapi.RSAKeyAlgorithm {
			t.Errorf("%s (%s) has key encipherment", cert.Name, cert.Spec.PrivateKey.Algorithm)
		}
	}
}

func TestIstioIngressIsTheSeedsPassthrough(t *testing.T) {
	t.Parallel()
	objs := issuer.Build(cfg(t, withIstio))
	gw, vs := objs[len(objs)-2].(*unstructured.Unstructured), objs[len(objs)-1].(*unstructured.Unstructured)
	get := func(u *unstructured.Unstructured, path ...string) any {
		t.Helper()
		v, found, err := unstructured.NestedFieldNoCopy(u.Object, path...)
		if err != nil || !found {
			t.Fatalf("%s has no %v: %v", u.GetKind(), path, err)
		}
		return v
	}
	server := get(gw, "spec", "servers").([]any)[0].(map[string]any)
	if diff := cmp.Diff(map[string]any{
		"port":  map[string]any{"number": int64(443), "name": "https", "protocol": "HTTPS"},
		"tls":   map[string]any{"mode": "PASSTHROUGH"},
		"hosts": []any{"enterprise-networking.gloo-mesh"},
	}, server); diff != "" {
		t.Errorf("gateway server (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"istio": "ingressgateway"}, get(gw, "spec", "selector")); diff != "" {
		t.Errorf("gateway selector (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"gloo-mesh/gloo-mesh-ingress"}, get(vs, "spec", "gateways")); diff != "" {
		t.Errorf("virtual service gateways (-want +got):\n%s", diff)
	}
	route := get(vs, "spec", "tls").([]any)[0].(map[string]any)
	if diff := cmp.Diff(map[string]any{
		"match": []any{map[string]any{"port": int64(443), "sniHosts": []any{"enterprise-networking.gloo-mesh"}}},
		"route": []any{map[string]any{"destination": map[string]any{
			"host": "enterprise-networking.gloo-mesh.svc.cluster.local",
			"port": map[string]any{"number": int64(9900)},
		}}},
	}, route); diff != "" {
		t.Errorf("virtual service tls route (-want +got):\n%s", diff)
	}
}

func TestRotationRootsAddTheSecondSlotAndMoveTheSigner(t *testing.T) {
	t.Parallel()
	c := cfg(t)
	tests := map[string]struct {
		roots      issuer.Roots
		wantCerts  []string
		wantSigner string
	}{
		"outside a rotation only slot 0 exists and signs": {
			roots: issuer.SteadyRoots(0), wantCerts: []string{"relay-root/relay-root-ca", "relay-server-tls/relay-server-tls-secret", "relay-tls-signing/relay-tls-signing-secret"}, wantSigner: "relay-root-ca",
		},
		"while the new root is distributed, the old one still signs": {
			roots:      issuer.Roots{Slots: []issuer.Slot{0, 1}, Signer: 0},
			wantCerts:  []string{"relay-root/relay-root-ca", "relay-root-2/relay-root-ca-2", "relay-server-tls/relay-server-tls-secret", "relay-tls-signing/relay-tls-signing-secret"},
			wantSigner: "relay-root-ca",
		},
		"after the switch, the new root signs": {
			roots:      issuer.Roots{Slots: []issuer.Slot{0, 1}, Signer: 1},
			wantCerts:  []string{"relay-root/relay-root-ca", "relay-root-2/relay-root-ca-2", "relay-server-tls/relay-server-tls-secret", "relay-tls-signing/relay-tls-signing-secret"},
			wantSigner: "relay-root-ca-2",
		},
		"after the old root is retired, slot 1 stands alone": {
			roots: issuer.SteadyRoots(1), wantCerts: []string{"relay-root-2/relay-root-ca-2", "relay-server-tls/relay-server-tls-secret", "relay-tls-signing/relay-tls-signing-secret"}, wantSigner: "relay-root-ca-2",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var certs []string
			for _, o := range issuer.BuildWithRoots(c, tc.roots) {
				crt, ok := o.(*cmapi.Certificate)
				if !ok {
					continue
				}
				certs = append(certs, crt.Name+"/"+crt.Spec.SecretName)
				if crt.Name == issuer.ServerCertificateName || crt.Name == issuer.SigningCertificateName {
					if crt.Spec.IssuerRef.Name != tc.wantSigner {
						t.Errorf("%s is signed by %s, want %s", crt.Name, crt.Spec.IssuerRef.Name, tc.wantSigner)
					}
				} else if crt.Spec.PrivateKey.RotationPolicy != cmapi.RotationPolicyNever || !crt.Spec.IsCA {
					t.Errorf("root %s is not a CA keeping its key", crt.Name)
				}
			}
			if diff := cmp.Diff(tc.wantCerts, certs); diff != "" {
				t.Errorf("certificates (-want +got):\n%s", diff)
			}
		})
	}
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/issuer"
)

// vaultPolicy is the least a relay-pki Vault issuer needs: the two signing
// endpoints, nothing else (docs/vault.md shows the same policy).
const vaultPolicy = `path "pki_int/sign/relay-server" { capabilities = ["update"] }
path "pki_int/root/sign-intermediate" { capabilities = ["update"] }
`

// TestVaultBackedRelayPKI issues the relay certificates from a real Vault
// (root and intermediate PKI mounts) through cert-manager's real Vault
// issuer, with each auth method, and checks what every cluster trusts.
func TestVaultBackedRelayPKI(t *testing.T) {
	if tools.Vault == "" {
		t.Fatal("RELAY_PKI_VAULT is not set: run the e2e tests through `make test`, which builds Vault with `make tools`")
	}
	planes := RunControlPlanes(t, "management", "workload-1")
	mgmt, w1 := planes["management"], planes["workload-1"]
	RunCertManager(t, mgmt)
	dir := t.TempDir()
	start := time.Now()
	v, err := framework.StartVault(dir, tools)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(v.LogPath)
			t.Logf("vault log tail:\n%s", tail(string(b), 3000))
		}
		_ = v.Stop()
	})
	t.Logf("vault (TLS) healthy at %s after %s", v.Addr, time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	cfg := config.Default()
	ns := cfg.Namespace
	createNamespace(t, mgmt, ns)
	createNamespace(t, mgmt, regNS)

	vaultRoot, auth := setupVault(t, v, mgmt, ns)
	t.Logf("vault root CA %s; intermediate pki_int; role relay-server; policy relay-pki on the two sign paths only", certinfo.Fingerprint(parseOne(t, vaultRoot))[:16])

	dirCtrl := t.TempDir()
	cfgFile := filepath.Join(dirCtrl, "relay-pki.yaml")
	writeVaultConfig := func(authYAML string, short bool) {
		t.Helper()
		var body strings.Builder
		fmt.Fprintf(&body, "apiVersion: relay-pki.io/v1alpha1\nkind: Config\nsync: {resyncPeriod: 1m}\nissuer:\n  vault:\n    server: %s\n    path: pki_int/sign/relay-server\n    signingPath: pki_int/root/sign-intermediate\n    caBundle: |\n", v.Addr)
		for _, line := range strings.Split(strings.TrimSpace(string(v.CAPEM)), "\n") {
			fmt.Fprintf(&body, "      %s\n", line)
		}
		fmt.Fprintf(&body, "    auth:\n      %s\n", authYAML)
		if short {
			body.WriteString("server: {duration: 1h, renewBefore: 59m45s}\nsigning: {duration: 1h, renewBefore: 59m45s}\n")
		}
		if err := os.WriteFile(cfgFile, []byte(body.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeVaultConfig(auth["token"], false)
	controller := runController(t, mgmt, dirCtrl, cfgFile)
	register(t, mgmt, "workload-1", w1, nil)

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	issuedBy := func(t *testing.T, method string) {
		t.Helper()
		for _, name := range []string{issuer.ServerCertificateName, issuer.SigningCertificateName} {
			waitIssuedAfter(t, mgmt, ns, name, method)
		}
		for _, iss := range []string{issuer.VaultIssuerName, issuer.VaultSigningIssuerName} {
			waitIssuerReady(t, mgmt, ns, iss, time.Minute)
		}
		srv := secretData(t, mgmt, ns, cfg.Server.SecretName)
		sgn := secretData(t, mgmt, ns, cfg.Signing.SecretName)
		leaf := parseOne(t, srv["tls.crt"])
		sub := parseOne(t, sgn["tls.crt"])
		if leaf.Issuer.CommonName != "relay-vault-intermediate" || sub.Issuer.CommonName != "relay-vault-intermediate" || !sub.IsCA {
			t.Errorf("server issued by %q, signing by %q (CA %t); want both by Vault's intermediate, signing a CA", leaf.Issuer.CommonName, sub.Issuer.CommonName, sub.IsCA)
		}
		roots, _ := certinfo.ParsePEM(vaultRoot)
		for name, chain := range map[string][]byte{"server": srv["tls.crt"], "signing": sgn["tls.crt"]} {
			if _, err := certinfo.VerifyChain(chain, roots, time.Now()); err != nil {
				t.Errorf("%s certificate does not chain to Vault's root: %v", name, err)
			}
		}
		t.Logf("%s auth: server (issuer %s, EKU %v) and signing (CA) issued by Vault", method, leaf.Issuer.CommonName, leaf.ExtKeyUsage)
	}

	step("token auth: Vault issues both certificates; the remote trusts Vault's root, not the intermediate", func(t *testing.T) {
		issuedBy(t, "token")
		waitForSecret(t, w1, ns, cfg.TrustBundle.SecretName, "ca.crt", vaultRoot, time.Minute)
		got := secretData(t, w1, ns, cfg.TrustBundle.SecretName)["ca.crt"]
		caEndpoint, err := v.Raw(ctx, "pki/ca/pem")
		if err != nil {
			t.Fatal(err)
		}
		anchors, _ := certinfo.ParsePEM(got)
		want, _ := certinfo.ParsePEM(caEndpoint)
		if len(anchors) != 1 || !anchors[0].Equal(want[0]) {
			t.Fatalf("workload-1 ca.crt is not Vault's root from pki/ca/pem")
		}
		// Byte for byte, but for the trailing newline PEM files end with.
		if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(caEndpoint)) {
			t.Errorf("workload-1 ca.crt (%d bytes) differs in bytes from pki/ca/pem (%d bytes)", len(got), len(caEndpoint))
		}
		if bytes.Contains(got, []byte(strings.TrimSpace(string(secretData(t, mgmt, ns, cfg.Server.SecretName)["tls.crt"])))) {
			t.Error("workload-1 ca.crt holds the server chain")
		}
		t.Logf("workload-1 ca.crt equals Vault's pki/ca/pem (%d bytes, sha256 %s); cert-manager's ca.crt subject: %s",
			len(got), certinfo.Fingerprint(anchors[0])[:16], parseOne(t, secretData(t, mgmt, ns, cfg.Server.SecretName)["ca.crt"]).Subject)
	})

	step("TLS through the intermediate and an agent certificate from the signing CA verify against the synced root", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(secretData(t, w1, ns, cfg.TrustBundle.SecretName)["ca.crt"])
		srv := secretData(t, mgmt, ns, cfg.Server.SecretName)
		pair, err := tls.X509KeyPair(srv["tls.crt"], srv["tls.key"])
		if err != nil {
			t.Fatal(err)
		}
		agentChain, agentKey, err := issueAgent(secretData(t, mgmt, ns, cfg.Signing.SecretName))
		if err != nil {
			t.Fatal(err)
		}
		agent, err := tlsCertificate(agentChain, agentKey)
		if err != nil {
			t.Fatal(err)
		}
		serverConf := &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
		if err := handshake(serverConf, &tls.Config{RootCAs: pool, ServerName: relayHost, Certificates: []tls.Certificate{*agent}, MinVersion: tls.VersionTLS12}); err != nil {
			t.Fatalf("mutual TLS against the synced Vault root: %v", err)
		}
		t.Logf("mutual TLS: server chain of %d certificates and agent chain of %d verified against workload-1's ca.crt", len(pair.Certificate), len(agent.Certificate))
	})

	for _, method := range []string{"appRole", "kubernetes"} {
		step(method+" auth: re-issued by Vault", func(t *testing.T) {
			writeVaultConfig(auth[method], false)
			if err := controller.Restart(); err != nil {
				t.Fatal(err)
			}
			waitIssuerAuth(t, mgmt, ns, issuer.VaultIssuerName, method)
			for _, name := range []string{issuer.ServerCertificateName, issuer.SigningCertificateName} {
				reissue(t, mgmt, ns, name)
			}
			issuedBy(t, method)
		})
	}

	step("renewal through Vault keeps the remote trust unchanged", func(t *testing.T) {
		writeVaultConfig(auth["token"], true)
		if err := controller.Restart(); err != nil {
			t.Fatal(err)
		}
		trustBefore := secretData(t, w1, ns, cfg.TrustBundle.SecretName)["ca.crt"]
		before := secretData(t, mgmt, ns, cfg.Server.SecretName)["tls.crt"]
		renewed := waitForChange(t, mgmt, ns, cfg.Server.SecretName, before, 2*time.Minute)
		next := waitForChange(t, mgmt, ns, cfg.Server.SecretName, renewed["tls.crt"], time.Minute)
		leaf := parseOne(t, next["tls.crt"])
		time.Sleep(2 * time.Second)
		if after := secretData(t, w1, ns, cfg.TrustBundle.SecretName)["ca.crt"]; !bytes.Equal(after, trustBefore) {
			t.Error("a renewal through Vault changed the remote trust bundle")
		}
		t.Logf("server certificate renewed twice through Vault (now valid until %s); workload-1 ca.crt unchanged", leaf.NotAfter.UTC().Format(time.RFC3339))
	})

	statusProblems := func(t *testing.T, want string) string {
		t.Helper()
		var last cliResult
		err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
			last = relayPKI(t, 30*time.Second, "status", "--kubeconfig", mgmt.KubeconfigPath, "--config", cfgFile)
			return last.code == 1 && strings.Contains(last.stdout, want), nil
		})
		if err != nil {
			t.Fatalf("status never reported %q; last exit %d:\n%s", want, last.code, last.stdout)
		}
		return last.stdout
	}
	lastGood := func(t *testing.T) {
		t.Helper()
		srv := secretData(t, mgmt, ns, cfg.Server.SecretName)
		leaf := parseOne(t, srv["tls.crt"])
		if time.Now().After(leaf.NotAfter) || len(srv["tls.key"]) == 0 {
			t.Error("the server certificate was removed or expired")
		}
		if got := secretData(t, w1, ns, cfg.TrustBundle.SecretName)["ca.crt"]; !bytes.Equal(got, vaultRoot) {
			t.Error("the remote trust changed while Vault was failing")
		}
	}
	// After a failed issuance cert-manager waits out its backoff (an hour
	// upstream) before it tries again, and keeps the failed request; an
	// operator who fixed Vault deletes it and renews (as docs/vault.md says).
	recovered := func(t *testing.T) {
		t.Helper()
		waitIssuerReady(t, mgmt, ns, issuer.VaultIssuerName, time.Minute)
		var crs cmapi.CertificateRequestList
		if err := mgmt.Client.List(ctx, &crs, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for i := range crs.Items {
			for _, c := range crs.Items[i].Status.Conditions {
				if c.Type == cmapi.CertificateRequestConditionReady && c.Reason == cmapi.CertificateRequestReasonFailed {
					if err := mgmt.Client.Delete(ctx, &crs.Items[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		for _, name := range []string{issuer.ServerCertificateName, issuer.SigningCertificateName} {
			reissue(t, mgmt, ns, name)
		}
		start := time.Now()
		waitForExit(t, 0, 2*time.Minute, "status", "--kubeconfig", mgmt.KubeconfigPath, "--config", cfgFile)
		t.Logf("healthy again %s after the renewal was requested", time.Since(start).Round(time.Millisecond))
	}
	problemLine := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "relay-server-tls:") || strings.Contains(l, "Issuer relay-vault") {
				return strings.TrimSpace(l)
			}
		}
		return ""
	}

	step("a wrong Vault token: clear conditions and status, the last good certificates stay", func(t *testing.T) {
		setToken(t, mgmt, ns, "hvs.not-a-real-token")
		out := statusProblems(t, "permission denied")
		t.Logf("status: %s", problemLine(out))
		lastGood(t)
		setToken(t, mgmt, ns, auth["tokenValue"])
		recovered(t)
	})

	step("a sealed Vault: clear conditions and status, the last good certificates stay", func(t *testing.T) {
		if _, err := v.Do(ctx, http.MethodPut, "sys/seal", nil); err != nil {
			t.Fatal(err)
		}
		out := statusProblems(t, "sealed")
		t.Logf("status: %s", problemLine(out))
		lastGood(t)
		key, err := v.UnsealKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.DoAs(ctx, "", http.MethodPut, "sys/unseal", map[string]any{"key": key}); err != nil {
			t.Fatal(err)
		}
		recovered(t)
	})

	step("a stopped Vault: clear conditions and status, the last good certificates stay", func(t *testing.T) {
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
		out := statusProblems(t, "connection refused")
		t.Logf("status: %s", problemLine(out))
		lastGood(t)
	})
}

// setupVault builds the PKI a Gloo Mesh team would: a root mount, an
// intermediate signed by it (its chain includes the root), a role for the
// relay server, the least-privilege policy, and the three auth methods. It
// returns Vault's root PEM and each method's relay-pki auth YAML.
func setupVault(t *testing.T, v *framework.Vault, mgmt *framework.ControlPlane, ns string) ([]byte, map[string]string) {
	t.Helper()
	ctx := t.Context()
	do := func(method, path string, body map[string]any) map[string]any {
		t.Helper()
		out, err := v.Do(ctx, method, path, body)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	do(http.MethodPost, "sys/mounts/pki", map[string]any{"type": "pki", "config": map[string]any{"max_lease_ttl": "87600h"}})
	do(http.MethodPost, "sys/mounts/pki_int", map[string]any{"type": "pki", "config": map[string]any{"max_lease_ttl": "43800h"}})
	root := do(http.MethodPost, "pki/root/generate/internal", map[string]any{"common_name": "relay-vault-root", "ttl": "87600h"})["certificate"].(string)
	csr := do(http.MethodPost, "pki_int/intermediate/generate/internal", map[string]any{"common_name": "relay-vault-intermediate"})["csr"].(string)
	signed := do(http.MethodPost, "pki/root/sign-intermediate", map[string]any{"csr": csr, "format": "pem", "ttl": "43800h"})["certificate"].(string)
	do(http.MethodPost, "pki_int/intermediate/set-signed", map[string]any{"certificate": signed + "\n" + root})
	do(http.MethodPost, "pki_int/roles/relay-server", map[string]any{
		"allowed_domains": []string{"gloo-mesh"}, "allow_subdomains": true, "allow_wildcard_certificates": true,
		"server_flag": true, "client_flag": true, "max_ttl": "8760h", "organization": []string{"relay-server-tls"},
		"key_usage": []string{"DigitalSignature", "KeyEncipherment", "ContentCommitment"},
	})
	do(http.MethodPut, "sys/policies/acl/relay-pki", map[string]any{"policy": vaultPolicy})

	// Token.
	tokenOut, err := v.Do(ctx, http.MethodPost, "auth/token/create", map[string]any{"policies": []string{"relay-pki"}, "ttl": "24h"})
	if err != nil {
		t.Fatal(err)
	}
	token := tokenOut["auth"].(map[string]any)["client_token"].(string)
	createSecret(t, mgmt, ns, "vault-token", map[string]string{"token": token})

	// AppRole.
	do(http.MethodPost, "sys/auth/approle", map[string]any{"type": "approle"})
	do(http.MethodPost, "auth/approle/role/relay-pki", map[string]any{"token_policies": []string{"relay-pki"}, "token_ttl": "1h"})
	roleID := do(http.MethodGet, "auth/approle/role/relay-pki/role-id", nil)["role_id"].(string)
	secretID := do(http.MethodPost, "auth/approle/role/relay-pki/secret-id", nil)["secret_id"].(string)
	createSecret(t, mgmt, ns, "vault-approle", map[string]string{"secretId": secretID})

	// Kubernetes: Vault reviews the token cert-manager presents with the
	// management apiserver's TokenReview API, as a reviewer ServiceAccount
	// bound to system:auth-delegator (the presented token itself carries
	// Vault's audiences, not the apiserver's, so it cannot be the reviewer).
	reviewer := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "vault-token-reviewer"}}
	if err := mgmt.Client.Create(ctx, reviewer); err != nil {
		t.Fatal(err)
	}
	if err := mgmt.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-token-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: reviewer.Namespace, Name: reviewer.Name}},
	}); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(mgmt.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(reviewer.Namespace).CreateToken(ctx, reviewer.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	do(http.MethodPost, "sys/auth/kubernetes", map[string]any{"type": "kubernetes"})
	do(http.MethodPost, "auth/kubernetes/config", map[string]any{
		"kubernetes_host": mgmt.Config.Host, "kubernetes_ca_cert": string(mgmt.Config.CAData),
		"token_reviewer_jwt": tr.Status.Token, "disable_local_ca_jwt": true,
	})
	do(http.MethodPost, "auth/kubernetes/role/relay-pki", map[string]any{
		"bound_service_account_names": []string{"relay-pki-vault"}, "bound_service_account_namespaces": []string{ns},
		"token_policies": []string{"relay-pki"}, "audience": "vault", "token_ttl": "1h",
	})
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "relay-pki-vault"}}
	if err := mgmt.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	return []byte(strings.TrimSpace(root) + "\n"), map[string]string{
		"token":      "tokenSecretRef: {name: vault-token, key: token}",
		"tokenValue": token,
		"appRole":    fmt.Sprintf("appRole: {path: approle, roleId: %s, secretRef: {name: vault-approle, key: secretId}}", roleID),
		"kubernetes": "kubernetes: {role: relay-pki, serviceAccountRef: {name: relay-pki-vault, audiences: [vault]}}",
	}
}

func createSecret(t *testing.T, cp *framework.ControlPlane, ns, name string, data map[string]string) {
	t.Helper()
	if err := cp.Client.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}); err != nil {
		t.Fatal(err)
	}
}

func setToken(t *testing.T, cp *framework.ControlPlane, ns, token string) {
	t.Helper()
	var s corev1.Secret
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "vault-token"}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data["token"] = []byte(token)
	if err := cp.Client.Update(t.Context(), &s); err != nil {
		t.Fatal(err)
	}
}

// waitIssuedAfter waits until the Certificate is Ready for its current spec.
func waitIssuedAfter(t *testing.T, cp *framework.ControlPlane, ns, name, method string) {
	t.Helper()
	if err := framework.WaitForCertificates(t.Context(), cp.Client, ns, []string{name}, 2*time.Minute, nil); err != nil {
		t.Fatalf("%s auth: %v", method, err)
	}
	// A re-issue requested just before may still be running.
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var crt cmapi.Certificate
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &crt); err != nil {
			return false, nil
		}
		for _, c := range crt.Status.Conditions {
			if c.Type == cmapi.CertificateConditionIssuing && c.Status == cmmeta.ConditionTrue {
				return false, nil
			}
		}
		return framework.CertificateReady(&crt), nil
	})
	if err != nil {
		t.Fatalf("%s auth: %s", method, framework.DescribeCertificate(t.Context(), cp.Client, ns, name))
	}
}

func waitIssuerReady(t *testing.T, cp *framework.ControlPlane, ns, name string, timeout time.Duration) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var iss cmapi.Issuer
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &iss); err != nil {
			return false, nil
		}
		for _, c := range iss.Status.Conditions {
			if c.Type == cmapi.IssuerConditionReady {
				last = c.Message
				return c.Status == cmmeta.ConditionTrue && c.ObservedGeneration == iss.Generation, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Issuer %s not Ready within %s: %s", name, timeout, last)
	}
}

// waitIssuerAuth waits until the applied Issuer uses the auth method.
func waitIssuerAuth(t *testing.T, cp *framework.ControlPlane, ns, name, method string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var iss cmapi.Issuer
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &iss); err != nil || iss.Spec.Vault == nil {
			return false, nil
		}
		b, _ := yaml.Marshal(iss.Spec.Vault.Auth)
		return strings.Contains(strings.ToLower(string(b)), strings.ToLower(method)), nil
	})
	if err != nil {
		t.Fatalf("Issuer %s was not switched to %s auth", name, method)
	}
	waitIssuerReady(t, cp, ns, name, time.Minute)
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	cmapiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/issuer"
)

const relayHost = "enterprise-networking.gloo-mesh"

// TestRelayPKIOnRealControlPlane installs the default relay PKI on a real
// apiserver with cert-manager's real controllers and webhook, then proves
// that what cert-manager issued is the seed's PKI and that it works.
func TestRelayPKIOnRealControlPlane(t *testing.T) {
	mgmt := RunControlPlanes(t, "management")["management"]
	cm := RunCertManager(t, mgmt)
	RunWebhook(t, mgmt)

	cfg := config.Default()
	ns := cfg.Namespace
	createNamespace(t, mgmt, ns)

	start := time.Now()
	if err := ssa.ApplyObjects(t.Context(), mgmt.Client, issuer.Build(cfg)); err != nil {
		t.Fatal(err)
	}
	names := []string{issuer.RootCertificateName, issuer.ServerCertificateName, issuer.SigningCertificateName}
	if err := framework.WaitForCertificates(t.Context(), mgmt.Client, ns, names, 2*time.Minute, func(name string, after time.Duration) {
		t.Logf("Certificate %s Ready after %s", name, after.Round(time.Millisecond))
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("all 3 relay certificates Ready %s after apply", time.Since(start).Round(time.Millisecond))

	secret := func(t *testing.T, name string) *corev1.Secret {
		t.Helper()
		var s corev1.Secret
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	rootSecret := secret(t, cfg.Root.SecretName)
	root := parseOne(t, rootSecret.Data["tls.crt"])

	t.Run("the root is self-signed with the seed's subject, RSA 4096 and CA flags", func(t *testing.T) {
		if err := root.CheckSignatureFrom(root); err != nil {
			t.Errorf("root is not self-signed: %v", err)
		}
		checkSubject(t, root, "relay-root")
		checkRSA(t, root, 4096)
		if !root.IsCA || !root.BasicConstraintsValid || root.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("root: IsCA=%v basicConstraints=%v keyUsage=%b, want a CA with certSign", root.IsCA, root.BasicConstraintsValid, root.KeyUsage)
		}
	})

	t.Run("server and signing certificates chain to the root with the seed's properties", func(t *testing.T) {
		leafUsage := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageContentCommitment
		for _, tc := range []struct {
			secret string
			org    string
			isCA   bool
			usage  x509.KeyUsage
		}{
			{cfg.Server.SecretName, "relay-server-tls", false, leafUsage},
			{cfg.Signing.SecretName, "relay-tls-signing", true, leafUsage | x509.KeyUsageCertSign},
		} {
			s := secret(t, tc.secret)
			for _, key := range []string{"tls.crt", "tls.key", "ca.crt"} {
				if len(s.Data[key]) == 0 {
					t.Errorf("%s has no %s", tc.secret, key)
				}
			}
			if !bytes.Equal(s.Data["ca.crt"], rootSecret.Data["tls.crt"]) {
				t.Errorf("%s ca.crt is not the root certificate", tc.secret)
			}
			leaf, err := certinfo.VerifyChain(s.Data["tls.crt"], []*x509.Certificate{root}, time.Now())
			if err != nil {
				t.Errorf("%s: %v", tc.secret, err)
				continue
			}
			checkSubject(t, leaf, tc.org)
			checkRSA(t, leaf, 2048)
			if leaf.IsCA != tc.isCA || !leaf.BasicConstraintsValid {
				t.Errorf("%s: IsCA=%v, want %v", tc.secret, leaf.IsCA, tc.isCA)
			}
			if leaf.KeyUsage != tc.usage {
				t.Errorf("%s: keyUsage=%b, want %b", tc.secret, leaf.KeyUsage, tc.usage)
			}
			if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || len(leaf.ExtKeyUsage) != 2 {
				t.Errorf("%s: extKeyUsage=%v, want serverAuth and clientAuth", tc.secret, leaf.ExtKeyUsage)
			}
			if l := s.Labels; l[issuer.ManagedByLabel] != issuer.ManagedBy || l[issuer.RoleLabel] == "" {
				t.Errorf("%s labels = %v, want relay-pki's", tc.secret, l)
			}
		}
		server := parseOne(t, secret(t, cfg.Server.SecretName).Data["tls.crt"])
		signing := parseOne(t, secret(t, cfg.Signing.SecretName).Data["tls.crt"])
		if server.SerialNumber.Cmp(signing.SerialNumber) == 0 || server.SerialNumber.Sign() == 0 {
			t.Errorf("serials server=%s signing=%s: want distinct and non-zero (the seed's script uses 0 for both)", server.SerialNumber, signing.SerialNumber)
		}
	})

	t.Run("an agent trusting only ca.crt completes a TLS handshake with the server", func(t *testing.T) {
		srv := secret(t, cfg.Server.SecretName)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(srv.Data["ca.crt"])
		pair, err := tls.X509KeyPair(srv.Data["tls.crt"], srv.Data["tls.key"])
		if err != nil {
			t.Fatal(err)
		}
		serverConf := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		if err := handshake(serverConf, &tls.Config{RootCAs: pool, ServerName: relayHost, MinVersion: tls.VersionTLS12}); err != nil {
			t.Fatalf("handshake with ServerName %s: %v", relayHost, err)
		}
		// The probe must be able to fail: a name the certificate does not cover.
		if err := handshake(serverConf, &tls.Config{RootCAs: pool, ServerName: "relay.example.com", MinVersion: tls.VersionTLS12}); err == nil {
			t.Fatal("handshake with an uncovered ServerName succeeded")
		}
	})

	t.Run("an agent certificate signed with the signing CA is accepted in mutual TLS", func(t *testing.T) {
		srv, sign := secret(t, cfg.Server.SecretName), secret(t, cfg.Signing.SecretName)
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(srv.Data["ca.crt"])
		pair, err := tls.X509KeyPair(srv.Data["tls.crt"], srv.Data["tls.key"])
		if err != nil {
			t.Fatal(err)
		}
		signingCert := parseOne(t, sign.Data["tls.crt"])
		signingKey := parseKey(t, sign.Data["tls.key"])
		agent := agentCertificate(t, "agent-workload-1", signingCert, signingKey)

		serverConf := &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, MinVersion: tls.VersionTLS12}
		agentConf := &tls.Config{Certificates: []tls.Certificate{agent}, RootCAs: roots, ServerName: relayHost, MinVersion: tls.VersionTLS12}
		if err := handshake(serverConf, agentConf); err != nil {
			t.Fatalf("mutual TLS with an agent certificate from the signing CA: %v", err)
		}
		if _, err := certinfo.VerifyChain(pemChain(agent), []*x509.Certificate{root}, time.Now()); err != nil {
			t.Errorf("agent chain does not verify against the root: %v", err)
		}
		// Negative control: an agent certificate from an unrelated CA is refused.
		rogueCA, rogueKey := selfSignedCA(t)
		rogue := agentCertificate(t, "rogue", rogueCA, rogueKey)
		if err := handshake(serverConf, &tls.Config{Certificates: []tls.Certificate{rogue}, RootCAs: roots, ServerName: relayHost, MinVersion: tls.VersionTLS12}); err == nil {
			t.Fatal("the server accepted an agent certificate from an unrelated CA")
		}
	})

	t.Run("a manually triggered re-issue replaces the server certificate under the same root", func(t *testing.T) {
		before := secret(t, cfg.Server.SecretName)
		var crt cmapi.Certificate
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: issuer.ServerCertificateName}, &crt); err != nil {
			t.Fatal(err)
		}
		// What `cmctl renew` does.
		cmapiutil.SetCertificateCondition(&crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "re-issue requested by the e2e test")
		if err := mgmt.Client.Status().Update(t.Context(), &crt); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		after := waitForSecretChange(t, mgmt, ns, cfg.Server.SecretName, before, 2*time.Minute)
		t.Logf("server certificate re-issued in %s", time.Since(start).Round(time.Millisecond))
		if _, err := certinfo.VerifyChain(after.Data["tls.crt"], []*x509.Certificate{root}, time.Now()); err != nil {
			t.Error(err)
		}
		if bytes.Equal(before.Data["tls.key"], after.Data["tls.key"]) {
			t.Error("the server key did not change (rotationPolicy Always)")
		}
	})

	t.Run("a certificate due for renewal is renewed by cert-manager on its own", func(t *testing.T) {
		short := &cmapi.Certificate{
			TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateKind},
			ObjectMeta: metav1.ObjectMeta{Name: "relay-short-lived", Namespace: ns},
			Spec: cmapi.CertificateSpec{
				SecretName: "relay-short-lived", CommonName: "*.gloo-mesh", DNSNames: []string{"*.gloo-mesh"},
				Duration:    &metav1.Duration{Duration: time.Hour},
				RenewBefore: &metav1.Duration{Duration: 59*time.Minute + 50*time.Second},
				IssuerRef:   cmmeta.IssuerReference{Name: issuer.RootIssuerName, Kind: cmapi.IssuerKind, Group: "cert-manager.io"},
			},
		}
		if err := ssa.ApplyObjects(t.Context(), mgmt.Client, []client.Object{short}); err != nil {
			t.Fatal(err)
		}
		if err := framework.WaitForCertificates(t.Context(), mgmt.Client, ns, []string{short.Name}, time.Minute, nil); err != nil {
			t.Fatal(err)
		}
		first := secret(t, short.Name)
		firstCert := parseOne(t, first.Data["tls.crt"])
		// Renewal is due 10 s after issuance; nothing but cert-manager acts.
		second := waitForSecretChange(t, mgmt, ns, short.Name, first, 2*time.Minute)
		secondCert, err := certinfo.VerifyChain(second.Data["tls.crt"], []*x509.Certificate{root}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("renewed %s after issuance (renewBefore 59m50s of 1h)", secondCert.NotBefore.Sub(firstCert.NotBefore))
		if secondCert.SerialNumber.Cmp(firstCert.SerialNumber) == 0 {
			t.Error("the renewed certificate has the same serial")
		}
	})

	t.Run("cert-manager's webhook refuses a Certificate a production cluster would refuse", func(t *testing.T) {
		bad := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "too-short", Namespace: ns},
			Spec: cmapi.CertificateSpec{
				SecretName: "too-short", CommonName: "x.gloo-mesh",
				Duration:  &metav1.Duration{Duration: 30 * time.Minute},
				IssuerRef: cmmeta.IssuerReference{Name: issuer.RootIssuerName},
			},
		}
		err := mgmt.Client.Create(t.Context(), bad)
		if err == nil {
			t.Fatal("the apiserver accepted a 30m Certificate")
		}
		t.Logf("refused: %v", err)
		if !strings.Contains(err.Error(), "webhook.cert-manager.io") || !strings.Contains(err.Error(), "spec.duration") {
			t.Errorf("error is not cert-manager's webhook on spec.duration: %v", err)
		}
	})

	rss, who := peakRSS(mgmt.Dir(), cm.PID())
	t.Logf("peak RSS of apiserver+etcd+cert-manager: %d MiB (%s)", rss>>20, strings.Join(who, ", "))
}

func parseOne(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	certs, err := certinfo.ParsePEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func parseKey(t *testing.T, data []byte) crypto.Signer {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

func checkSubject(t *testing.T, c *x509.Certificate, org string) {
	t.Helper()
	if c.Subject.CommonName != "*.gloo-mesh" || !slices.Equal(c.Subject.Organization, []string{org}) || !slices.Equal(c.DNSNames, []string{"*.gloo-mesh"}) {
		t.Errorf("%s: CN=%q O=%v SAN=%v, want CN and SAN *.gloo-mesh, O %s", org, c.Subject.CommonName, c.Subject.Organization, c.DNSNames, org)
	}
}

func checkRSA(t *testing.T, c *x509.Certificate, bits int) {
	t.Helper()
	k, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok || k.N.BitLen() != bits {
		t.Errorf("%s: key %T, want RSA %d", c.Subject, c.PublicKey, bits)
	}
}

// agentCertificate issues what the relay server issues an agent: a client
// certificate signed with the signing CA, presented with that CA in chain.
func agentCertificate(t *testing.T, cn string, ca *x509.Certificate, caKey crypto.Signer) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}
}

func selfSignedCA(t *testing.T) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rogue CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func pemChain(c tls.Certificate) []byte {
	var b bytes.Buffer
	for _, der := range c.Certificate {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return b.Bytes()
}

// handshake runs one TLS handshake over loopback and returns the client's
// or the server's error.
func handshake(server, clientConf *tls.Config) error {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		return err
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		srvErr <- conn.(*tls.Conn).Handshake()
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), clientConf)
	if err == nil {
		// TLS 1.3 client certificates are checked after the client's
		// handshake returns; a read surfaces the server's verdict.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if sErr := <-srvErr; sErr != nil {
		return sErr
	}
	return err
}

func waitForSecretChange(t *testing.T, cp *framework.ControlPlane, ns, name string, before *corev1.Secret, timeout time.Duration) *corev1.Secret {
	t.Helper()
	var after corev1.Secret
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &after); err != nil {
			return false, nil
		}
		return !bytes.Equal(after.Data["tls.crt"], before.Data["tls.crt"]), nil
	})
	if err != nil {
		t.Fatalf("secret %s/%s did not change within %s: %v\n%s", ns, name, timeout, err,
			framework.DescribeCertificate(context.Background(), cp.Client, ns, strings.TrimSuffix(name, "-secret")))
	}
	return &after
}

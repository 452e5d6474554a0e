//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
	"github.com/relay-pki/relay-pki/sync/rotation"
)

// TestRootRotationAcrossClusters rotates the root key on real control planes
// with real cert-manager while a handshake probe runs: a relay server and one
// agent per workload cluster, each trusting only what its own cluster holds.
func TestRootRotationAcrossClusters(t *testing.T) {
	planes := RunControlPlanes(t, "management", "workload-1", "workload-2")
	mgmt, w1, w2 := planes["management"], planes["workload-1"], planes["workload-2"]
	RunCertManager(t, mgmt)
	cfg := config.Default()
	ns := cfg.Namespace
	createNamespace(t, mgmt, ns)
	createNamespace(t, mgmt, regNS)

	// A short grace: agents below renew their client certificates every
	// second, so 8 s is several renewals.
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "relay-pki.yaml")
	if err := os.WriteFile(cfgFile, []byte("apiVersion: relay-pki.io/v1alpha1\nkind: Config\nrotation:\n  gracePeriod: 8s\nsync:\n  resyncPeriod: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No leader election: a SIGKILLed leader's lease would hold its
	// successor back for the lease duration at every kill, which tests
	// leader election, not resumption.
	controller, err := framework.StartProcess("relay-pki-controller", dir, tools.RelayPKI, nil,
		"controller", "--kubeconfig", mgmt.KubeconfigPath, "--config", cfgFile, "--registration-namespace", regNS,
		"--leader-elect=false", "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--connect-timeout", "3s", "-v", "2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(controller.LogPath)
			t.Logf("controller log tail:\n%s", tail(string(b), 8000))
		}
		_ = controller.Stop()
	})
	if err := framework.WaitForCertificates(t.Context(), mgmt.Client, ns,
		[]string{issuer.RootCertificateName, issuer.ServerCertificateName, issuer.SigningCertificateName}, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	register(t, mgmt, "workload-1", w1, nil)
	register(t, mgmt, "workload-2", w2, nil)
	bundleOf := func(cp *framework.ControlPlane) []byte {
		return secretData(t, cp, ns, cfg.TrustBundle.SecretName)["ca.crt"]
	}
	waitForState(t, mgmt, "workload-1", relaysync.StateSynced, time.Minute)
	waitForState(t, mgmt, "workload-2", relaysync.StateSynced, time.Minute)

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("a signing CA renewed with a new key keeps old agent certificates chaining to the root", func(t *testing.T) {
		before := secretData(t, mgmt, ns, cfg.Signing.SecretName)
		oldAgent := signAgent(t, before)
		reissue(t, mgmt, ns, issuer.SigningCertificateName)
		after := waitForChange(t, mgmt, ns, cfg.Signing.SecretName, before["tls.crt"], time.Minute)
		if bytes.Equal(after["tls.key"], before["tls.key"]) {
			t.Fatal("the signing key did not change (rotationPolicy Always)")
		}
		roots, _ := certinfo.ParsePEM(bundleOf(mgmt))
		for name, chain := range map[string][]byte{"agent certificate from the old signing key": oldAgent, "agent certificate from the new signing key": signAgent(t, after)} {
			if _, err := certinfo.VerifyChain(chain, roots, time.Now()); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		t.Log("agent certificates from the old and the new signing key both chain to the unchanged root")
	})

	step("rotate token: a new token reaches every cluster and is never printed", func(t *testing.T) {
		old := secretData(t, mgmt, ns, cfg.IdentityToken.SecretName)["token"]
		start := time.Now()
		res := relayPKI(t, time.Minute, "rotate", "token", "--kubeconfig", mgmt.KubeconfigPath)
		if res.code != 0 {
			t.Fatalf("rotate token: %s", res.stderr)
		}
		tok := secretData(t, mgmt, ns, cfg.IdentityToken.SecretName)["token"]
		if bytes.Equal(tok, old) || len(tok) != 43 {
			t.Fatalf("token not replaced by 43 base64url characters (len %d)", len(tok))
		}
		for _, w := range []*framework.ControlPlane{w1, w2} {
			waitForSecret(t, w, ns, cfg.IdentityToken.SecretName, "token", tok, 30*time.Second)
		}
		t.Logf("new token in both workload clusters %s after rotate token", time.Since(start).Round(time.Millisecond))
		if strings.Contains(res.stdout+res.stderr, string(tok)) {
			t.Error("rotate token printed the token")
		}
	})

	probe := startProbe(t, mgmt, map[string]*framework.ControlPlane{"workload-1": w1, "workload-2": w2}, cfg)

	rotateOnce := func(t *testing.T, onPhase func(rotation.Phase)) {
		t.Helper()
		oldRoot := bundleOf(mgmt)
		start := time.Now()
		watchDone := watchPhases(t, mgmt, ns, onPhase)
		res := relayPKI(t, 4*time.Minute, "rotate", "root", "--kubeconfig", mgmt.KubeconfigPath, "--wait", "--timeout", "3m")
		watchDone()
		t.Logf("rotate root --wait exited %d after %s:\n%s", res.code, time.Since(start).Round(time.Millisecond), res.stdout)
		if res.code != 0 {
			t.Fatalf("rotate root: %s", res.stderr)
		}
		newBundle := bundleOf(mgmt)
		roots, err := certinfo.ParsePEM(newBundle)
		if err != nil || len(roots) != 1 || bytes.Equal(newBundle, oldRoot) {
			t.Fatalf("management bundle after the rotation: %d roots, changed %t; want only the new root", len(roots), !bytes.Equal(newBundle, oldRoot))
		}
		for _, w := range []*framework.ControlPlane{w1, w2} {
			waitForSecret(t, w, ns, cfg.TrustBundle.SecretName, "ca.crt", newBundle, 30*time.Second)
		}
		for _, s := range []string{cfg.Server.SecretName, cfg.Signing.SecretName} {
			if _, err := certinfo.VerifyChain(secretData(t, mgmt, ns, s)["tls.crt"], roots, time.Now()); err != nil {
				t.Errorf("%s does not chain to the new root: %v", s, err)
			}
		}
	}

	step("a full root key rotation: every cluster ends on the new root, no handshake fails", func(t *testing.T) {
		probe.reset()
		rotateOnce(t, nil)
		ok, failed := probe.counts()
		t.Logf("handshakes: %d ok, %d failed", ok, failed)
		if failed != 0 || ok < 100 {
			t.Errorf("handshakes: %d ok, %d failed; want 0 failed of at least 100 (first failures: %v)", ok, failed, probe.failures())
		}
	})

	step("the same rotation with the controller SIGKILLed and restarted at each stage boundary", func(t *testing.T) {
		probe.reset()
		var kills []string
		rotateOnce(t, func(p rotation.Phase) {
			if err := controller.Kill(); err != nil {
				t.Errorf("kill at %s: %v", p, err)
				return
			}
			kills = append(kills, string(p))
			if err := controller.Start(); err != nil {
				t.Errorf("restart at %s: %v", p, err)
			}
		})
		ok, failed := probe.counts()
		t.Logf("controller killed and restarted on entering %v", kills)
		t.Logf("handshakes: %d ok, %d failed", ok, failed)
		if len(kills) < 4 {
			t.Errorf("killed at %d stage boundaries (%v), want at least 4", len(kills), kills)
		}
		if failed != 0 || ok < 100 {
			t.Errorf("handshakes: %d ok, %d failed; want 0 failed (first failures: %v)", ok, failed, probe.failures())
		}
	})

	step("an unreachable cluster stops the rotation at Distributing, named; back, the rotation completes", func(t *testing.T) {
		probe.reset()
		probe.pause("workload-2")
		if err := w2.StopProcesses(); err != nil {
			t.Fatal(err)
		}
		waitForState(t, mgmt, "workload-2", relaysync.StateUnreachable, time.Minute)
		res := relayPKI(t, time.Minute, "rotate", "root", "--kubeconfig", mgmt.KubeconfigPath)
		if res.code != 0 {
			t.Fatalf("rotate root: %s", res.stderr)
		}
		var st rotation.State
		if err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			st = rotationState(t, mgmt, ns)
			return st.Phase == rotation.Distributing && strings.Join(st.WaitingFor, ",") == "workload-2", nil
		}); err != nil {
			t.Fatalf("rotation did not stop at Distributing waiting for workload-2: %+v", st)
		}
		time.Sleep(5 * time.Second)
		st = rotationState(t, mgmt, ns)
		if st.Phase != rotation.Distributing {
			t.Fatalf("the rotation went on to %s with workload-2 unreachable", st.Phase)
		}
		status := relayPKI(t, time.Minute, "status", "--kubeconfig", mgmt.KubeconfigPath)
		t.Logf("status while held:\n%s", status.stdout)
		if !strings.Contains(status.stdout, "root rotation: Distributing") || !strings.Contains(status.stdout, "waiting for workload-2") {
			t.Error("status does not show the held rotation and the cluster it waits for")
		}
		if !hasEvent(t, mgmt, ns, relaysync.RotationConfigMap, "RotationWaiting") {
			t.Error("no RotationWaiting event")
		}
		start := time.Now()
		if err := w2.StartProcesses(); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			st = rotationState(t, mgmt, ns)
			return st.Phase == rotation.Idle, nil
		}); err != nil {
			t.Fatalf("the rotation did not complete after workload-2 returned: %+v", st)
		}
		t.Logf("rotation completed %s after workload-2 was started again", time.Since(start).Round(time.Millisecond))
		probe.resume("workload-2")
		newBundle := bundleOf(mgmt)
		waitForSecret(t, w2, ns, cfg.TrustBundle.SecretName, "ca.crt", newBundle, 30*time.Second)
		ok, failed := probe.counts()
		t.Logf("handshakes (workload-1's agent throughout): %d ok, %d failed", ok, failed)
		if failed != 0 {
			t.Errorf("%d handshakes failed: %v", failed, probe.failures())
		}
	})

	step("negative control: an unstaged swap of root and bundle makes the probe fail", func(t *testing.T) {
		// Do what a script or a naive controller would: replace the root
		// key, copy its certificate everywhere at once, re-issue.
		if err := controller.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		probe.reset()
		st := rotationState(t, mgmt, ns)
		slot := issuer.RootSlot(cfg, st.Active)
		before := secretData(t, mgmt, ns, slot.Secret)
		if err := mgmt.Client.Delete(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: slot.Secret}}); err != nil {
			t.Fatal(err)
		}
		newRoot := waitForChange(t, mgmt, ns, slot.Secret, before["tls.crt"], time.Minute)["tls.crt"]
		for _, cp := range []*framework.ControlPlane{mgmt, w1, w2} {
			var s corev1.Secret
			if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &s); err != nil {
				t.Fatal(err)
			}
			s.Data["ca.crt"] = newRoot
			if err := cp.Client.Update(t.Context(), &s); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		reissue(t, mgmt, ns, issuer.ServerCertificateName)
		reissue(t, mgmt, ns, issuer.SigningCertificateName)
		time.Sleep(3 * time.Second)
		ok, failed := probe.counts()
		t.Logf("handshakes: %d ok, %d failed (unstaged swap)", ok, failed)
		if failed == 0 {
			t.Error("the unstaged swap caused no failed handshake: the probe cannot tell a broken rotation")
		}
	})
	probe.stop()
}

// rotationState reads the controller's rotation ConfigMap.
func rotationState(t *testing.T, cp *framework.ControlPlane, ns string) rotation.State {
	t.Helper()
	var cm corev1.ConfigMap
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: relaysync.RotationConfigMap}, &cm); err != nil {
		return rotation.State{}
	}
	st, err := rotation.FromData(cm.Data)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// watchPhases calls onPhase (if set) on each change of rotation phase and
// logs each; the returned func stops it.
func watchPhases(t *testing.T, cp *framework.ControlPlane, ns string, onPhase func(rotation.Phase)) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		last := rotationState(t, cp, ns).Phase
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			var cm corev1.ConfigMap
			if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: relaysync.RotationConfigMap}, &cm); err != nil {
				continue
			}
			p := rotation.Phase(cm.Data[rotation.KeyPhase])
			if p == "" || p == last {
				continue
			}
			t.Logf("  phase %s at %s", p, time.Since(start).Round(10*time.Millisecond))
			last = p
			if onPhase != nil && p != rotation.Idle {
				onPhase(p)
			}
		}
	}()
	return func() { cancel(); <-done }
}

func reissue(t *testing.T, cp *framework.ControlPlane, ns, name string) {
	t.Helper()
	var crt cmapi.Certificate
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &crt); err != nil {
		t.Fatal(err)
	}
	cmapiutil.SetCertificateCondition(&crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "e2e: re-issue")
	if err := cp.Client.Status().Update(t.Context(), &crt); err != nil {
		t.Fatal(err)
	}
}

func waitForChange(t *testing.T, cp *framework.ControlPlane, ns, name string, old []byte, timeout time.Duration) map[string][]byte {
	t.Helper()
	var data map[string][]byte
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		data = secretData(t, cp, ns, name)
		return len(data["tls.crt"]) > 0 && !bytes.Equal(data["tls.crt"], old), nil
	}); err != nil {
		t.Fatalf("Secret %s/%s did not change within %s", ns, name, timeout)
	}
	return data
}

// signAgent issues an agent client certificate with the signing CA, as the
// relay server does, and returns the chain [agent, signing CA].
func signAgent(t *testing.T, signing map[string][]byte) []byte {
	t.Helper()
	chain, _, err := issueAgent(signing)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func issueAgent(signing map[string][]byte) ([]byte, *ecdsa.PrivateKey, error) {
	ca, err := tls.X509KeyPair(signing["tls.crt"], signing["tls.key"])
	if err != nil {
		return nil, nil, err
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	// The chain up to the root: the signing CA's own tls.crt holds it and
	// any intermediate (Vault's), which a server that lists only roots as
	// acceptable CAs needs to see.
	var chain bytes.Buffer
	chain.Write(pemCert(der))
	chain.Write(signing["tls.crt"])
	return chain.Bytes(), key, nil
}

// probe is a relay server on the management cluster's secrets and one agent
// per workload cluster, connecting every 100 ms.
type probe struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstFails []string
	paused     sync.Map
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func (p *probe) reset() {
	p.ok.Store(0)
	p.failed.Store(0)
	p.mu.Lock()
	p.firstFails = nil
	p.mu.Unlock()
}
func (p *probe) counts() (int64, int64) { return p.ok.Load(), p.failed.Load() }
func (p *probe) pause(agent string)     { p.paused.Store(agent, true) }
func (p *probe) resume(agent string)    { p.paused.Delete(agent) }
func (p *probe) stop()                  { p.cancel(); p.wg.Wait() }
func (p *probe) failures() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.firstFails...)
}
func (p *probe) fail(agent string, err error) {
	p.failed.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.firstFails) < 5 {
		p.firstFails = append(p.firstFails, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), agent, err))
	}
}

func startProbe(t *testing.T, mgmt *framework.ControlPlane, agents map[string]*framework.ControlPlane, cfg *config.Config) *probe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{cancel: cancel}
	t.Cleanup(p.stop)
	ns := cfg.Namespace

	// The server reloads its certificate and client CAs when they change,
	// as Gloo's relay server does with its mounted secrets.
	var serverConf atomic.Pointer[tls.Config]
	load := func() error {
		var srv, trust corev1.Secret
		if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.Server.SecretName}, &srv); err != nil {
			return err
		}
		if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &trust); err != nil {
			return err
		}
		pair, err := tls.X509KeyPair(srv.Data["tls.crt"], srv.Data["tls.key"])
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(trust.Data["ca.crt"]) {
			return errors.New("no client CA")
		}
		serverConf.Store(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
		return nil
	}
	if err := load(); err != nil {
		t.Fatal(err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for ctx.Err() == nil {
			_ = load()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := tls.NewListener(ln, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return serverConf.Load(), nil }})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-ctx.Done()
		_ = tlsLn.Close()
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			conn, err := tlsLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				if err := conn.(*tls.Conn).Handshake(); err == nil {
					_, _ = conn.Write([]byte("k"))
				}
			}()
		}
	}()

	for name, cp := range agents {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.runAgent(ctx, name, cp, mgmt, cfg, ln.Addr().String())
		}()
	}
	return p
}

// runAgent connects every 100 ms, trusting only its own cluster's
// relay-root-tls-secret (re-read for each connection) and presenting a client
// certificate from the signing CA that it renews every second.
func (p *probe) runAgent(ctx context.Context, name string, cp, mgmt *framework.ControlPlane, cfg *config.Config, addr string) {
	ns := cfg.Namespace
	var clientCert *tls.Certificate
	renewed := time.Time{}
	for ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		if _, paused := p.paused.Load(name); paused {
			continue
		}
		if time.Since(renewed) > time.Second {
			var signing corev1.Secret
			if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.Signing.SecretName}, &signing); err == nil {
				if chain, key, err := issueAgent(signing.Data); err == nil {
					if c, err := tlsCertificate(chain, key); err == nil {
						clientCert, renewed = c, time.Now()
					}
				}
			}
		}
		var trust corev1.Secret
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &trust); err != nil {
			if ctx.Err() == nil {
				p.fail(name, fmt.Errorf("read trust bundle: %w", err))
			}
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(trust.Data["ca.crt"])
		if clientCert == nil {
			p.fail(name, errors.New("no client certificate"))
			continue
		}
		d := &net.Dialer{Timeout: 2 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: relayHost, RootCAs: pool, Certificates: []tls.Certificate{*clientCert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			p.fail(name, err)
			continue
		}
		// TLS 1.3 clients finish before the server has checked their
		// certificate: the server's byte says it accepted this one.
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1)
		_, err = conn.Read(buf)
		conn.Close()
		if err != nil {
			p.fail(name, fmt.Errorf("server refused the client certificate: %w", err))
			continue
		}
		p.ok.Add(1)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func tlsCertificate(chain []byte, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(chain, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

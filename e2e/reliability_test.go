//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

// TestFaultsAreSurvived injects faults into a running installation
// (management + 2 workload control planes, cert-manager, the controller as a
// process) and checks that nothing agents depend on is lost or corrupted.
func TestFaultsAreSurvived(t *testing.T) {
	planes := RunControlPlanes(t, "management", "workload-1", "workload-2")
	mgmt, w1, w2 := planes["management"], planes["workload-1"], planes["workload-2"]
	certManager := RunCertManager(t, mgmt)
	cfg := config.Default()
	ns := cfg.Namespace
	createNamespace(t, mgmt, ns)
	createNamespace(t, mgmt, regNS)
	dir := t.TempDir()
	controller := runController(t, mgmt, dir, writeSyncConfig(t, dir, false))
	if err := framework.WaitForCertificates(t.Context(), mgmt.Client, ns,
		[]string{issuer.RootCertificateName, issuer.ServerCertificateName, issuer.SigningCertificateName}, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	register(t, mgmt, "workload-1", w1, nil)
	register(t, mgmt, "workload-2", w2, nil)
	waitForState(t, mgmt, "workload-1", relaysync.StateSynced, time.Minute)
	waitForState(t, mgmt, "workload-2", relaysync.StateSynced, time.Minute)
	workloads := []*framework.ControlPlane{w1, w2}

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	token := func() []byte { return secretData(t, mgmt, ns, cfg.IdentityToken.SecretName)[cfg.IdentityToken.Key] }
	deleteToken := func(t *testing.T) {
		t.Helper()
		if err := mgmt.Client.Delete(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cfg.IdentityToken.SecretName}}); err != nil {
			t.Fatal(err)
		}
	}
	waitForToken := func(t *testing.T, want []byte, timeout time.Duration) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
			return len(token()) > 0, nil
		}); err != nil {
			t.Fatal("the token Secret was not recreated")
		}
		if got := token(); !bytes.Equal(got, want) {
			t.Fatalf("the token was replaced by a new one (%d characters), not restored", len(got))
		}
	}
	remoteVersions := func(t *testing.T) string {
		t.Helper()
		var b strings.Builder
		for _, w := range workloads {
			for _, name := range []string{cfg.TrustBundle.SecretName, cfg.IdentityToken.SecretName} {
				var s corev1.Secret
				if err := w.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
					t.Fatal(err)
				}
				b.WriteString(w.Name + "/" + name + "@" + s.ResourceVersion + " ")
			}
		}
		return b.String()
	}

	step("7: a deleted management token is restored with the same value", func(t *testing.T) {
		want, before := token(), remoteVersions(t)
		start := time.Now()
		deleteToken(t)
		waitForToken(t, want, 30*time.Second)
		t.Logf("token restored (same value) %s after its Secret was deleted", time.Since(start).Round(time.Millisecond))
		time.Sleep(time.Second)
		if after := remoteVersions(t); after != before {
			t.Errorf("workload copies were rewritten: %s -> %s", before, after)
		}
	})

	step("7: deleted while the controller is down, the token is restored from a workload cluster's copy", func(t *testing.T) {
		want := token()
		if err := controller.Stop(); err != nil {
			t.Fatal(err)
		}
		deleteToken(t)
		start := time.Now()
		if err := controller.Start(); err != nil {
			t.Fatal(err)
		}
		waitForToken(t, want, time.Minute)
		t.Logf("token restored from a workload copy %s after the controller started", time.Since(start).Round(time.Millisecond))
		if !hasEvent(t, mgmt, ns, cfg.IdentityToken.SecretName, "TokenRestored") {
			t.Error("no TokenRestored event")
		}
		for _, w := range workloads {
			waitForSecret(t, w, ns, cfg.IdentityToken.SecretName, "token", want, 10*time.Second)
		}
	})

	step("6: garbage PEM in the root secret publishes nothing; the last good bundle stays everywhere", func(t *testing.T) {
		// cert-manager would repair its own secret at once; stop it so the
		// controller faces the garbage.
		if err := certManager.Stop(); err != nil {
			t.Fatal(err)
		}
		good := secretData(t, mgmt, ns, cfg.TrustBundle.SecretName)["ca.crt"]
		before := remoteVersions(t)
		var root corev1.Secret
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.Root.SecretName}, &root); err != nil {
			t.Fatal(err)
		}
		original := bytes.Clone(root.Data["tls.crt"])
		root.Data["tls.crt"] = []byte("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n")
		if err := mgmt.Client.Update(t.Context(), &root); err != nil {
			t.Fatal(err)
		}
		if !hasEvent(t, mgmt, ns, cfg.TrustBundle.SecretName, "TrustBundleInvalid") {
			t.Error("no TrustBundleInvalid event")
		}
		time.Sleep(2 * time.Second)
		if got := secretData(t, mgmt, ns, cfg.TrustBundle.SecretName)["ca.crt"]; !bytes.Equal(got, good) {
			t.Error("the management bundle changed after the root secret was corrupted")
		}
		if after := remoteVersions(t); after != before {
			t.Errorf("workload copies were rewritten: %s -> %s", before, after)
		}
		t.Log("corrupted root: nothing published, 0 workload writes, TrustBundleInvalid reported")
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.Root.SecretName}, &root); err != nil {
			t.Fatal(err)
		}
		root.Data["tls.crt"] = original
		if err := mgmt.Client.Update(t.Context(), &root); err != nil {
			t.Fatal(err)
		}
		if err := certManager.Start(); err != nil {
			t.Fatal(err)
		}
	})

	step("6: a hand edit of the management relay-root-tls-secret is undone and never reaches the workload clusters", func(t *testing.T) {
		good := secretData(t, mgmt, ns, cfg.TrustBundle.SecretName)["ca.crt"]
		before := remoteVersions(t)
		var s corev1.Secret
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &s); err != nil {
			t.Fatal(err)
		}
		s.Data["ca.crt"] = []byte("-----BEGIN CERTIFICATE-----\nZWRpdGVk\n-----END CERTIFICATE-----\n")
		start := time.Now()
		if err := mgmt.Client.Update(t.Context(), &s); err != nil {
			t.Fatal(err)
		}
		waitForSecret(t, mgmt, ns, cfg.TrustBundle.SecretName, "ca.crt", good, 30*time.Second)
		t.Logf("hand edit undone in %s", time.Since(start).Round(time.Millisecond))
		time.Sleep(time.Second)
		if after := remoteVersions(t); after != before {
			t.Errorf("the edit reached workload clusters: %s -> %s", before, after)
		}
	})

	step("2: the management apiserver and etcd restart; the controller recovers without a restart", func(t *testing.T) {
		pid := controller.PID()
		offset := fileSize(controller.LogPath)
		if err := mgmt.StopProcesses(); err != nil {
			t.Fatal(err)
		}
		// Longer than the 10 s renew deadline: the leader loses its lease.
		time.Sleep(12 * time.Second)
		start := time.Now()
		if err := mgmt.StartProcesses(); err != nil {
			t.Fatal(err)
		}
		res := relayPKI(t, time.Minute, "rotate", "token", "--kubeconfig", mgmt.KubeconfigPath)
		if res.code != 0 {
			t.Fatalf("rotate token: %s", res.stderr)
		}
		want := token()
		for _, w := range workloads {
			waitForSecret(t, w, ns, cfg.IdentityToken.SecretName, "token", want, 2*time.Minute)
		}
		t.Logf("down 12 s (past the renew deadline); a token change reached both workload clusters %s after the management control plane was started again, same controller process", time.Since(start).Round(time.Millisecond))
		if controller.PID() != pid {
			t.Errorf("the controller was restarted (pid %d -> %d)", pid, controller.PID())
		}
		if !strings.Contains(string(readFile(t, controller.LogPath)[offset:]), "lost leadership; campaigning again") {
			t.Error("the controller did not lose and regain leadership in the same process")
		}
	})

	step("wrong server, wrong CA and bad credentials give a clear state and back off, never a hot loop", func(t *testing.T) {
		good, err := clientcmd.Load(w1.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		other := selfSignedCAPEM(t)
		variants := map[string]struct {
			edit  func(*clientcmdapi.Config)
			state relaysync.State
			want  string
		}{
			"bad-server": {func(c *clientcmdapi.Config) {
				for _, cl := range c.Clusters {
					cl.Server = "https://127.0.0.1:1"
				}
			}, relaysync.StateUnreachable, "connection refused"},
			"bad-ca": {func(c *clientcmdapi.Config) {
				for _, cl := range c.Clusters {
					cl.CertificateAuthorityData = other
				}
			}, relaysync.StateUnreachable, "certificate signed by unknown authority"},
			"bad-credentials": {func(c *clientcmdapi.Config) {
				for _, u := range c.AuthInfos {
					u.ClientCertificateData, u.ClientKeyData, u.Token = nil, nil, "expired-or-revoked"
				}
			}, relaysync.StateForbidden, "Unauthorized"},
		}
		offset := fileSize(controller.LogPath)
		for name, v := range variants {
			kc := good.DeepCopy()
			v.edit(kc)
			raw, err := clientcmd.Write(*kc)
			if err != nil {
				t.Fatal(err)
			}
			createRegistration(t, mgmt, name, name, raw, nil)
		}
		for name, v := range variants {
			waitForState(t, mgmt, name, v.state, time.Minute)
			msg := registration(t, mgmt, name).Annotations[relaysync.MessageAnnotation]
			t.Logf("%s: state %s: %s", name, v.state, msg)
			if !strings.Contains(msg, v.want) {
				t.Errorf("%s: message %q does not say %q", name, msg, v.want)
			}
		}
		// Backoff doubles from 5 s: in 30 s at most a handful of attempts.
		time.Sleep(30 * time.Second)
		logs := string(readFile(t, controller.LogPath)[offset:])
		for name := range variants {
			attempts := 0
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "sync failed") && strings.Contains(line, `"cluster": "`+name+`"`) {
					attempts++
				}
			}
			t.Logf("%s: %d sync attempts in about 35 s", name, attempts)
			if attempts > 6 {
				t.Errorf("%s: %d attempts in 35 s: a hot loop, not a backoff", name, attempts)
			}
			if err := mgmt.Client.Delete(t.Context(), registration(t, mgmt, name)); err != nil {
				t.Fatal(err)
			}
		}
	})

	step("no token or private key in the controller's log", func(t *testing.T) {
		var s corev1.Secret
		err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.IdentityToken.SecretName}, &s)
		if apierrors.IsNotFound(err) {
			t.Fatal("no token")
		}
		logs := readFile(t, controller.LogPath)
		if bytes.Contains(logs, s.Data["token"]) || bytes.Contains(logs, []byte("PRIVATE KEY")) {
			t.Error("the controller log holds the token or a private key")
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func selfSignedCAPEM(t *testing.T) []byte {
	t.Helper()
	c, _ := selfSignedCA(t)
	return pemCert(c.Raw)
}

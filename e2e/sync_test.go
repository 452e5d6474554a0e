//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmapiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

const regNS = "relay-pki-system"

// TestSyncControllerAcrossClusters runs `relay-pki controller` as a process
// against a management control plane with cert-manager and two workload
// control planes, and proves each behaviour of the sync issue on them.
func TestSyncControllerAcrossClusters(t *testing.T) {
	planes := RunControlPlanes(t, "management", "workload-1", "workload-2")
	mgmt, w1, w2 := planes["management"], planes["workload-1"], planes["workload-2"]
	RunCertManager(t, mgmt)
	cfg := config.Default()
	ns := cfg.Namespace
	createNamespace(t, mgmt, ns)
	createNamespace(t, mgmt, regNS)

	ctrlDir := t.TempDir()
	cfgFile := writeSyncConfig(t, ctrlDir, false)
	controller := runController(t, mgmt, ctrlDir, cfgFile)

	// The controller applies the issuer objects itself (--manage-issuers).
	if err := framework.WaitForCertificates(t.Context(), mgmt.Client, ns,
		[]string{issuer.RootCertificateName, issuer.ServerCertificateName, issuer.SigningCertificateName}, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	// Each step builds on the one before; stop at the first that fails.
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	rootPEM := func() []byte { return secretData(t, mgmt, ns, cfg.Root.SecretName)["tls.crt"] }
	mgmtToken := func() []byte { return secretData(t, mgmt, ns, cfg.IdentityToken.SecretName)[cfg.IdentityToken.Key] }

	step("a: both registered clusters receive the root and the management cluster's token", func(t *testing.T) {
		start := time.Now()
		register(t, mgmt, "workload-1", w1, nil)
		register(t, mgmt, "workload-2", w2, nil)
		for _, w := range []*framework.ControlPlane{w1, w2} {
			waitForSecret(t, w, ns, cfg.TrustBundle.SecretName, "ca.crt", rootPEM(), time.Minute)
			waitForSecret(t, w, ns, cfg.IdentityToken.SecretName, "token", mgmtToken(), time.Minute)
		}
		t.Logf("converged: 2 clusters hold ca.crt and token %s after registration", time.Since(start).Round(time.Millisecond))
		waitForState(t, mgmt, "workload-1", relaysync.StateSynced, 30*time.Second)
		waitForState(t, mgmt, "workload-2", relaysync.StateSynced, 30*time.Second)
		if got := secretData(t, mgmt, ns, cfg.TrustBundle.SecretName)["ca.crt"]; !bytes.Equal(got, rootPEM()) {
			t.Error("the management cluster's relay-root-tls-secret is not the root")
		}
		if tok := mgmtToken(); len(tok) != 43 {
			t.Errorf("generated token has %d characters, want 43 (32 bytes, base64url)", len(tok))
		}
	})

	step("b: a deleted copy is recreated and an edited ca.crt restored", func(t *testing.T) {
		start := time.Now()
		if err := w1.Client.Delete(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cfg.TrustBundle.SecretName}}); err != nil {
			t.Fatal(err)
		}
		waitForSecret(t, w1, ns, cfg.TrustBundle.SecretName, "ca.crt", rootPEM(), 30*time.Second)
		t.Logf("deleted copy recreated in %s", time.Since(start).Round(time.Millisecond))

		var s corev1.Secret
		if err := w2.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &s); err != nil {
			t.Fatal(err)
		}
		s.Data["ca.crt"] = []byte("-----BEGIN CERTIFICATE-----\nZm9yZ2Vk\n-----END CERTIFICATE-----\n")
		s.Data["extra"] = []byte("added by hand")
		start = time.Now()
		if err := w2.Client.Update(t.Context(), &s); err != nil {
			t.Fatal(err)
		}
		got := waitForSecret(t, w2, ns, cfg.TrustBundle.SecretName, "ca.crt", rootPEM(), 30*time.Second)
		t.Logf("edited ca.crt restored in %s", time.Since(start).Round(time.Millisecond))
		if _, ok := got["extra"]; ok {
			t.Error("a key added by hand was left in the managed copy")
		}
	})

	step("c: a root re-issued by cert-manager with the same key reaches every cluster", func(t *testing.T) {
		before := rootPEM()
		beforeKey := secretDataRaw(t, mgmt, ns, cfg.Root.SecretName)["tls.key"]
		var root cmapi.Certificate
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: issuer.RootCertificateName}, &root); err != nil {
			t.Fatal(err)
		}
		cmapiutil.SetCertificateCondition(&root, root.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "e2e: re-issue the root")
		start := time.Now()
		if err := mgmt.Client.Status().Update(t.Context(), &root); err != nil {
			t.Fatal(err)
		}
		var after []byte
		if err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			after = rootPEM()
			return !bytes.Equal(after, before), nil
		}); err != nil {
			t.Fatal("the root was not re-issued")
		}
		if !bytes.Equal(beforeKey, secretDataRaw(t, mgmt, ns, cfg.Root.SecretName)["tls.key"]) {
			t.Error("the root key changed on renewal (rotationPolicy Never)")
		}
		for _, w := range []*framework.ControlPlane{w1, w2} {
			waitForSecret(t, w, ns, cfg.TrustBundle.SecretName, "ca.crt", after, time.Minute)
		}
		t.Logf("re-issued root reached both clusters %s after the re-issue was requested", time.Since(start).Round(time.Millisecond))
	})

	step("d: an unreachable cluster is marked and does not hold back the others", func(t *testing.T) {
		if err := w2.StopProcesses(); err != nil {
			t.Fatal(err)
		}
		waitForState(t, mgmt, "workload-2", relaysync.StateUnreachable, time.Minute)
		newToken := []byte(fmt.Sprintf("rotated-by-e2e-%d", time.Now().UnixNano()))
		var tok corev1.Secret
		if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.IdentityToken.SecretName}, &tok); err != nil {
			t.Fatal(err)
		}
		tok.Data[cfg.IdentityToken.Key] = newToken
		start := time.Now()
		if err := mgmt.Client.Update(t.Context(), &tok); err != nil {
			t.Fatal(err)
		}
		waitForSecret(t, w1, ns, cfg.IdentityToken.SecretName, "token", newToken, 30*time.Second)
		t.Logf("token change reached workload-1 in %s while workload-2 was down", time.Since(start).Round(time.Millisecond))

		start = time.Now()
		if err := w2.StartProcesses(); err != nil {
			t.Fatal(err)
		}
		waitForSecret(t, w2, ns, cfg.IdentityToken.SecretName, "token", newToken, 2*time.Minute)
		waitForState(t, mgmt, "workload-2", relaysync.StateSynced, time.Minute)
		t.Logf("workload-2 converged %s after its control plane was started again (restart included)", time.Since(start).Round(time.Millisecond))
	})

	step("e: an unmanaged secret in the way is left alone and reported as Conflict", func(t *testing.T) {
		createNamespace(t, w1, "conflicted")
		theirs := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "conflicted", Name: cfg.TrustBundle.SecretName},
			Data:       map[string][]byte{"ca.crt": []byte("someone else's bundle")},
		}
		if err := w1.Client.Create(t.Context(), theirs); err != nil {
			t.Fatal(err)
		}
		register(t, mgmt, "workload-1-conflicted", w1, map[string]string{relaysync.NamespaceAnnotation: "conflicted"})
		waitForState(t, mgmt, "workload-1-conflicted", relaysync.StateConflict, time.Minute)
		// The token, which is not in the way, is still delivered.
		waitForSecret(t, w1, "conflicted", cfg.IdentityToken.SecretName, "token", mgmtToken(), 30*time.Second)
		var now corev1.Secret
		if err := w1.Client.Get(t.Context(), client.ObjectKeyFromObject(theirs), &now); err != nil {
			t.Fatal(err)
		}
		if now.ResourceVersion != theirs.ResourceVersion || string(now.Data["ca.crt"]) != "someone else's bundle" {
			t.Errorf("the unmanaged secret was modified (resourceVersion %s -> %s)", theirs.ResourceVersion, now.ResourceVersion)
		}
		if !hasEvent(t, mgmt, regNS, "workload-1-conflicted", "Conflict") {
			t.Error("no Conflict event on the registration")
		}
	})

	step("h: a restarted controller writes nothing to clusters already in sync", func(t *testing.T) {
		// Count every write to Secrets that reaches the apiservers of
		// workload-2 and of the management cluster across a restart.
		waitForState(t, mgmt, "workload-2", relaysync.StateSynced, time.Minute)
		time.Sleep(2 * time.Second) // let status writes of earlier steps land
		beforeW2, beforeMgmt := secretWrites(t, w2), secretWrites(t, mgmt)
		if err := controller.Stop(); err != nil {
			t.Fatal(err)
		}
		offset := fileSize(controller.LogPath)
		if err := controller.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the restarted controller has checked workload-2.
		waitForLogLine(t, controller.LogPath, offset, time.Minute, "in sync, nothing written", `"cluster": "workload-2"`)
		time.Sleep(3 * time.Second)
		afterW2, afterMgmt := secretWrites(t, w2), secretWrites(t, mgmt)
		t.Logf("Secret writes across the restart: workload-2 %d, management %d", afterW2-beforeW2, afterMgmt-beforeMgmt)
		if afterW2 != beforeW2 || afterMgmt != beforeMgmt {
			t.Errorf("the restarted controller wrote to Secrets: workload-2 %d, management %d; want 0 and 0", afterW2-beforeW2, afterMgmt-beforeMgmt)
		}
	})

	step("restart with sync.adoptExisting: true and sync.deletionPolicy: Delete", func(t *testing.T) {
		if err := controller.Stop(); err != nil {
			t.Fatal(err)
		}
		writeSyncConfig(t, ctrlDir, true)
		if err := controller.Start(); err != nil {
			t.Fatal(err)
		}
	})

	step("e: with adoptExisting the unmanaged secret is taken over", func(t *testing.T) {
		got := waitForSecret(t, w1, "conflicted", cfg.TrustBundle.SecretName, "ca.crt", rootPEM(), time.Minute)
		if len(got) != 1 {
			t.Errorf("adopted secret has keys %v, want only ca.crt", keys(got))
		}
		var s corev1.Secret
		if err := w1.Client.Get(t.Context(), client.ObjectKey{Namespace: "conflicted", Name: cfg.TrustBundle.SecretName}, &s); err != nil {
			t.Fatal(err)
		}
		if s.Labels[issuer.ManagedByLabel] != issuer.ManagedBy {
			t.Errorf("adopted secret labels = %v", s.Labels)
		}
	})

	step("deregistering with deletionPolicy Delete removes only what relay-pki manages there", func(t *testing.T) {
		reg := registration(t, mgmt, "workload-1-conflicted")
		if !slices.Contains(reg.Finalizers, relaysync.CleanupFinalizer) {
			t.Fatalf("registration finalizers = %v, want %s", reg.Finalizers, relaysync.CleanupFinalizer)
		}
		bystander := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "conflicted", Name: "not-ours"}, Data: map[string][]byte{"k": []byte("v")}}
		if err := w1.Client.Create(t.Context(), bystander); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := mgmt.Client.Delete(t.Context(), reg); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var s corev1.Secret
			err := mgmt.Client.Get(ctx, client.ObjectKeyFromObject(reg), &s)
			return apierrors.IsNotFound(err), nil
		}); err != nil {
			t.Fatal("the registration was not released")
		}
		t.Logf("deregistered and cleaned up in %s", time.Since(start).Round(time.Millisecond))
		for _, name := range []string{cfg.TrustBundle.SecretName, cfg.IdentityToken.SecretName} {
			if data := secretData(t, w1, "conflicted", name); len(data) != 0 {
				t.Errorf("%s is still in workload-1/conflicted", name)
			}
		}
		if data := secretData(t, w1, "conflicted", "not-ours"); len(data) == 0 {
			t.Error("a Secret relay-pki does not manage was deleted")
		}
		// The other registration of the same cluster is unaffected.
		waitForSecret(t, w1, ns, cfg.TrustBundle.SecretName, "ca.crt", rootPEM(), 10*time.Second)
	})

	step("f: a kubeconfig with an exec plugin is refused", func(t *testing.T) {
		execKubeconfig := []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "touch /tmp/relay-pki-pwned"]}}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
		createRegistration(t, mgmt, "evil", "evil", execKubeconfig, nil)
		waitForState(t, mgmt, "evil", relaysync.StateInvalidKubeconfig, 30*time.Second)
		msg := registration(t, mgmt, "evil").Annotations[relaysync.MessageAnnotation]
		if !strings.Contains(msg, "exec plugin") {
			t.Errorf("message %q does not name the exec plugin", msg)
		}
		if _, err := os.Stat("/tmp/relay-pki-pwned"); err == nil {
			t.Error("the exec plugin ran")
		}
	})

	step("g: no token or private key in logs, events or remote secrets", func(t *testing.T) {
		secrets := [][]byte{mgmtToken(), []byte("PRIVATE KEY")}
		logs, err := os.ReadFile(controller.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		var events bytes.Buffer
		for _, cp := range []*framework.ControlPlane{mgmt, w1, w2} {
			var list corev1.EventList
			if err := cp.Client.List(t.Context(), &list); err != nil {
				t.Fatal(err)
			}
			for _, e := range list.Items {
				fmt.Fprintf(&events, "%s %s %s %s\n", cp.Name, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
		for _, s := range secrets {
			if bytes.Contains(logs, s) {
				t.Errorf("controller log (%d bytes) contains %q", len(logs), redact(s))
			}
			if bytes.Contains(events.Bytes(), s) {
				t.Errorf("events contain %q", redact(s))
			}
		}
		t.Logf("checked %d bytes of controller log and %d events", len(logs), bytes.Count(events.Bytes(), []byte("\n")))
		for _, w := range []*framework.ControlPlane{w1, w2} {
			var list corev1.SecretList
			if err := w.Client.List(t.Context(), &list, client.MatchingLabels{issuer.ManagedByLabel: issuer.ManagedBy}); err != nil {
				t.Fatal(err)
			}
			for _, s := range list.Items {
				for k, v := range s.Data {
					if (k != "ca.crt" && k != "token") || bytes.Contains(v, []byte("PRIVATE KEY")) {
						t.Errorf("%s: Secret %s/%s holds key %q", w.Name, s.Namespace, s.Name, k)
					}
				}
			}
			if len(list.Items) == 0 {
				t.Errorf("%s holds no managed secrets", w.Name)
			}
		}
	})
}

func writeSyncConfig(t *testing.T, dir string, adopt bool) string {
	t.Helper()
	p := filepath.Join(dir, "relay-pki.yaml")
	policy := "Retain"
	if adopt {
		policy = "Delete"
	}
	body := fmt.Sprintf("apiVersion: relay-pki.io/v1alpha1\nkind: Config\nsync:\n  adoptExisting: %v\n  deletionPolicy: %s\n  resyncPeriod: 1m\n", adopt, policy)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runController(t *testing.T, mgmt *framework.ControlPlane, dir, cfgFile string) *framework.Process {
	t.Helper()
	p, err := framework.StartProcess("relay-pki-controller", dir, tools.RelayPKI, nil,
		"controller", "--kubeconfig", mgmt.KubeconfigPath, "--config", cfgFile,
		"--registration-namespace", regNS, "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--connect-timeout", "5s", "-v", "2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.LogPath)
			t.Logf("controller log tail:\n%s", tail(string(b), 6000))
		}
		_ = p.Stop()
	})
	return p
}

func register(t *testing.T, mgmt *framework.ControlPlane, name string, remote *framework.ControlPlane, annotations map[string]string) {
	t.Helper()
	createRegistration(t, mgmt, name, name, remote.Kubeconfig, annotations)
}

func createRegistration(t *testing.T, mgmt *framework.ControlPlane, name, cluster string, kubeconfig []byte, annotations map[string]string) {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: regNS, Name: name, Labels: map[string]string{relaysync.ClusterLabel: cluster}, Annotations: annotations},
		Data:       map[string][]byte{relaysync.KubeconfigKey: kubeconfig},
	}
	if err := mgmt.Client.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

func registration(t *testing.T, mgmt *framework.ControlPlane, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := mgmt.Client.Get(t.Context(), client.ObjectKey{Namespace: regNS, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func waitForState(t *testing.T, mgmt *framework.ControlPlane, name string, state relaysync.State, timeout time.Duration) {
	t.Helper()
	var last *corev1.Secret
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var s corev1.Secret
		if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: regNS, Name: name}, &s); err != nil {
			return false, nil
		}
		last = &s
		return s.Annotations[relaysync.StateAnnotation] == string(state), nil
	})
	if err != nil {
		var ann map[string]string
		if last != nil {
			ann = last.Annotations
		}
		t.Fatalf("registration %s did not reach state %s within %s; annotations: %v", name, state, timeout, ann)
	}
}

// waitForSecret waits until Secret ns/name in cp has data[key] == want and
// returns its data.
func waitForSecret(t *testing.T, cp *framework.ControlPlane, ns, name, key string, want []byte, timeout time.Duration) map[string][]byte {
	t.Helper()
	var got map[string][]byte
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var s corev1.Secret
		if err := cp.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			return false, nil
		}
		got = s.Data
		return bytes.Equal(s.Data[key], want), nil
	})
	if err != nil {
		t.Fatalf("%s: Secret %s/%s key %s did not reach the expected value within %s (keys now: %v)", cp.Name, ns, name, key, timeout, keys(got))
	}
	return got
}

func secretData(t *testing.T, cp *framework.ControlPlane, ns, name string) map[string][]byte {
	t.Helper()
	return secretDataRaw(t, cp, ns, name)
}

func secretDataRaw(t *testing.T, cp *framework.ControlPlane, ns, name string) map[string][]byte {
	t.Helper()
	var s corev1.Secret
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return map[string][]byte{}
		}
		t.Fatal(err)
	}
	return s.Data
}

func hasEvent(t *testing.T, cp *framework.ControlPlane, ns, name, reason string) bool {
	t.Helper()
	var found bool
	_ = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var list corev1.EventList
		if err := cp.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, nil
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				found = true
			}
		}
		return found, nil
	})
	return found
}

// secretWrites sums the apiserver's own count of write requests to Secrets.
func secretWrites(t *testing.T, cp *framework.ControlPlane) int64 {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="secrets"`) {
			continue
		}
		isWrite := false
		for _, v := range []string{"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION", "CREATE", "UPDATE"} {
			if strings.Contains(line, `verb="`+v+`"`) {
				isWrite = true
			}
		}
		if !isWrite {
			continue
		}
		n, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		total += int64(n)
	}
	return total
}

// waitForLogLine waits for a line written after offset that contains every
// one of parts.
func waitForLogLine(t *testing.T, path string, offset int64, timeout time.Duration, parts ...string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		b, _ := os.ReadFile(path)
		if int64(len(b)) < offset {
			return false, nil
		}
		for _, line := range strings.Split(string(b[offset:]), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no log line with %q in %s within %s", parts, path, timeout)
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func redact(s []byte) string {
	if len(s) > 6 {
		return string(s[:3]) + "…"
	}
	return string(s)
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/deploy/charts"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/install"
	"github.com/relay-pki/relay-pki/internal/scheme"
	relayregister "github.com/relay-pki/relay-pki/register"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

// chartRelease is where the e2e installs the chart's RBAC.
var chartRelease = charts.Release{Name: "relay-pki", Namespace: regNS}

// TestOperatorCommands drives the operator's commands as a user would, as
// processes against real control planes: install (with and without
// cert-manager), register with least-privilege credentials, the controller
// under the Helm chart's RBAC (by impersonating its ServiceAccount), status
// and verify on a healthy and on a tampered setup.
func TestOperatorCommands(t *testing.T) {
	planes := RunControlPlanes(t, "management")
	mgmt := planes["management"]
	// A workload cluster has no cert-manager: its control plane gets no CRDs,
	// which also makes it the cluster "without cert-manager" for install.
	w1 := runBareControlPlane(t, "workload-1")
	cfg := config.Default()
	ns := cfg.Namespace

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("install against a cluster without cert-manager names cert-manager and fails", func(t *testing.T) {
		res := relayPKI(t, time.Minute, "install", "--kubeconfig", w1.KubeconfigPath, "--timeout", "30s")
		t.Logf("exit %d; stderr: %s", res.code, strings.TrimSpace(res.stderr))
		if res.code == 0 {
			t.Fatal("install succeeded without cert-manager")
		}
		if !strings.Contains(res.stderr, "cert-manager is not installed") || !strings.Contains(res.stderr, "certificates.cert-manager.io") {
			t.Errorf("stderr does not name cert-manager and its CRDs: %q", res.stderr)
		}
	})

	RunCertManager(t, mgmt)
	// As after a real cert-manager install: its controller holds its Lease.
	waitForCertManagerLease(t, mgmt)
	step("install against the management cluster shows progress and exits 0; again, it changes nothing", func(t *testing.T) {
		start := time.Now()
		res := relayPKI(t, 5*time.Minute, "install", "--kubeconfig", mgmt.KubeconfigPath, "--timeout", "3m")
		t.Logf("install exited %d after %s; output:\n%s", res.code, time.Since(start).Round(time.Millisecond), res.stdout)
		if res.code != 0 {
			t.Fatalf("install failed: %s", res.stderr)
		}
		for _, want := range []string{"Checking cert-manager", "certificate relay-root: Ready", "certificate relay-server-tls: Ready", "certificate relay-tls-signing: Ready", "relay PKI ready: 3 certificates Ready"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("install output lacks %q", want)
			}
		}
		again := relayPKI(t, time.Minute, "install", "--kubeconfig", mgmt.KubeconfigPath, "--timeout", "1m")
		if again.code != 0 {
			t.Fatalf("second install failed: %s", again.stderr)
		}
		lastLine := lastLine(again.stdout)
		t.Logf("second install: %s", lastLine)
		if !strings.Contains(lastLine, ", 0 of ") {
			t.Errorf("second install changed objects: %q", lastLine)
		}
	})

	createNamespace(t, mgmt, regNS)
	// Files the controller reads live for the whole test, not one step.
	ctrlDir := t.TempDir()
	var saKubeconfig string
	step("the chart's RBAC is applied and its ServiceAccount is refused secrets outside its namespaces", func(t *testing.T) {
		objs, err := charts.Objects(chartRelease, nil)
		if err != nil {
			t.Fatal(err)
		}
		var applied []string
		for _, o := range objs {
			switch o.GetKind() {
			case "ServiceAccount", "Role", "RoleBinding":
			default:
				continue
			}
			if err := mgmt.Client.Create(t.Context(), o); err != nil {
				t.Fatalf("create %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
			applied = append(applied, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
		}
		t.Logf("applied from the chart: %s", strings.Join(applied, ", "))
		saKubeconfig = impersonatingKubeconfig(t, mgmt, ctrlDir, regNS, chartRelease.Name)

		sa := clientFor(t, saKubeconfig)
		bystander := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "not-for-relay-pki"}, StringData: map[string]string{"k": "v"}}
		if err := mgmt.Client.Create(t.Context(), bystander); err != nil {
			t.Fatal(err)
		}
		for _, probe := range []struct {
			what string
			call func() error
		}{
			{"get Secret default/not-for-relay-pki", func() error {
				return sa.Get(t.Context(), client.ObjectKeyFromObject(bystander), &corev1.Secret{})
			}},
			{"list Secrets in kube-system", func() error { return sa.List(t.Context(), &corev1.SecretList{}, client.InNamespace("kube-system")) }},
			{"list Secrets in all namespaces", func() error { return sa.List(t.Context(), &corev1.SecretList{}) }},
		} {
			err := probe.call()
			t.Logf("as the chart's ServiceAccount, %s: %v", probe.what, err)
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: err = %v, want Forbidden", probe.what, err)
			}
		}
	})

	var regKubeconfig []byte
	step("register creates credentials that may write the two secrets and nothing else", func(t *testing.T) {
		remoteCtx := currentContext(t, w1.KubeconfigPath)
		dry := relayPKI(t, time.Minute, "register", "workload-1", "--kubeconfig", mgmt.KubeconfigPath,
			"--remote-kubeconfig", w1.KubeconfigPath, "--remote-context", remoteCtx, "--dry-run")
		if dry.code != 0 || !strings.Contains(dry.stdout, "kind: Role") || !strings.Contains(dry.stdout, "# management cluster") {
			t.Fatalf("dry run: exit %d, stdout:\n%s\nstderr: %s", dry.code, dry.stdout, dry.stderr)
		}
		var none corev1.ServiceAccount
		if err := w1.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: relayregister.ServiceAccountName}, &none); !apierrors.IsNotFound(err) {
			t.Errorf("--dry-run wrote to the workload cluster (ServiceAccount get: %v)", err)
		}

		res := relayPKI(t, time.Minute, "register", "workload-1", "--kubeconfig", mgmt.KubeconfigPath,
			"--remote-kubeconfig", w1.KubeconfigPath, "--remote-context", remoteCtx)
		t.Logf("register: %s", strings.TrimSpace(res.stdout))
		if res.code != 0 {
			t.Fatalf("register failed: %s", res.stderr)
		}
		regKubeconfig = registration(t, mgmt, "workload-1").Data[relaysync.KubeconfigKey]
		restCfg, err := clientcmd.RESTConfigFromKubeConfig(regKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if restCfg.BearerToken == "" || len(restCfg.CertData) > 0 {
			t.Fatal("the registration does not carry a ServiceAccount token alone")
		}
		cs, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			t.Fatal(err)
		}
		other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gloo-mesh-agent-internal"}, StringData: map[string]string{"k": "v"}}
		if err := w1.Client.Create(t.Context(), other); err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Secrets(ns).Get(t.Context(), other.Name, metav1.GetOptions{})
		t.Logf("with the registration's credentials, get Secret %s/%s: %v", ns, other.Name, err)
		if !apierrors.IsForbidden(err) {
			t.Errorf("reading another Secret in %s: err = %v, want Forbidden", ns, err)
		}
		_, err = cs.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets in %s: err = %v, want Forbidden", ns, err)
		}
		_, err = cs.CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets in kube-system: err = %v, want Forbidden", err)
		}
		for _, a := range []struct {
			verb, name string
			allowed    bool
		}{
			{"patch", cfg.TrustBundle.SecretName, true},
			{"update", cfg.IdentityToken.SecretName, true},
			{"get", cfg.TrustBundle.SecretName, true},
			{"create", "", true},
			{"get", other.Name, false},
			{"patch", other.Name, false},
			{"delete", cfg.TrustBundle.SecretName, false}, // deletionPolicy Retain
		} {
			review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: ns, Verb: a.verb, Resource: "secrets", Name: a.name,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != a.allowed {
				t.Errorf("%s secrets/%q in %s: allowed = %t, want %t", a.verb, a.name, ns, review.Status.Allowed, a.allowed)
			}
		}
	})

	cfgFile := filepath.Join(ctrlDir, "relay-pki.yaml")
	if err := os.WriteFile(cfgFile, []byte("apiVersion: relay-pki.io/v1alpha1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The controller's only credentials: the chart's ServiceAccount in the
	// management cluster, and what the registration holds.
	ctrlStart := time.Now()
	controller := runController(t, &framework.ControlPlane{Name: "management-as-serviceaccount", KubeconfigPath: saKubeconfig}, ctrlDir, cfgFile)
	step("the controller under the chart's RBAC syncs the registered cluster with the registration's credentials only", func(t *testing.T) {
		start := ctrlStart
		root := secretData(t, mgmt, ns, cfg.Root.SecretName)["tls.crt"]
		waitForSecret(t, w1, ns, cfg.TrustBundle.SecretName, "ca.crt", root, 2*time.Minute)
		token := secretData(t, mgmt, ns, cfg.IdentityToken.SecretName)[cfg.IdentityToken.Key]
		waitForSecret(t, w1, ns, cfg.IdentityToken.SecretName, "token", token, time.Minute)
		waitForState(t, mgmt, "workload-1", relaysync.StateSynced, time.Minute)
		t.Logf("workload-1 synced %s after the controller started", time.Since(start).Round(time.Millisecond))
		logs, err := os.ReadFile(controller.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(bytes.ToLower(logs), []byte("forbidden")); n > 0 {
			t.Errorf("the controller was refused %d time(s) under the chart's RBAC; log:\n%s", n, tail(string(logs), 4000))
		}
	})

	step("status exits 0 on the healthy setup", func(t *testing.T) {
		res := waitForExit(t, 0, time.Minute, "status", "--kubeconfig", mgmt.KubeconfigPath)
		t.Logf("status exited %d:\n%s", res.code, res.stdout)
		if !strings.Contains(res.stdout, "workload-1") || !strings.Contains(res.stdout, "healthy") {
			t.Errorf("status output lacks the cluster or the verdict")
		}
		v := relayPKI(t, time.Minute, "verify", "--kubeconfig", mgmt.KubeconfigPath, "--relay-host", "enterprise-networking.gloo-mesh")
		t.Logf("verify exited %d:\n%s", v.code, v.stdout)
		if v.code != 0 {
			t.Errorf("verify failed on a healthy setup: %s", v.stderr)
		}
	})

	step("with the controller stopped, a tampered ca.crt makes status fail and verify name the cluster", func(t *testing.T) {
		if err := controller.Stop(); err != nil {
			t.Fatal(err)
		}
		var s corev1.Secret
		if err := w1.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &s); err != nil {
			t.Fatal(err)
		}
		s.Data["ca.crt"] = append(bytes.Clone(s.Data["ca.crt"]), []byte("# tampered\n")...)
		if err := w1.Client.Update(t.Context(), &s); err != nil {
			t.Fatal(err)
		}
		st := relayPKI(t, time.Minute, "status", "--kubeconfig", mgmt.KubeconfigPath)
		t.Logf("status exited %d:\n%s", st.code, st.stdout)
		if st.code != 1 {
			t.Errorf("status exit code %d on a tampered cluster, want 1", st.code)
		}
		if !strings.Contains(st.stdout, "DIFFERS") {
			t.Error("status does not show the differing ca.crt")
		}
		v := relayPKI(t, time.Minute, "verify", "--kubeconfig", mgmt.KubeconfigPath, "--problems-only")
		t.Logf("verify exited %d:\n%s", v.code, v.stdout)
		if v.code != 1 {
			t.Errorf("verify exit code %d on a tampered cluster, want 1", v.code)
		}
		var named bool
		for _, line := range strings.Split(v.stdout, "\n") {
			named = named || (strings.HasPrefix(line, "ERROR") && strings.Contains(line, " workload-1 ") && strings.Contains(line, cfg.TrustBundle.SecretName))
		}
		if !named {
			t.Error("verify has no ERROR line naming workload-1's relay-root-tls-secret")
		}
	})

	step("the restarted controller repairs the copy and status is healthy again", func(t *testing.T) {
		start := time.Now()
		if err := controller.Start(); err != nil {
			t.Fatal(err)
		}
		waitForExit(t, 0, time.Minute, "status", "--kubeconfig", mgmt.KubeconfigPath)
		t.Logf("healthy again %s after the controller restarted", time.Since(start).Round(time.Millisecond))
	})

	step("deregister with --remote-context removes the registration and revokes its credentials", func(t *testing.T) {
		res := relayPKI(t, time.Minute, "deregister", "workload-1", "--kubeconfig", mgmt.KubeconfigPath,
			"--remote-kubeconfig", w1.KubeconfigPath, "--remote-context", currentContext(t, w1.KubeconfigPath))
		t.Logf("deregister: %s", strings.TrimSpace(res.stdout))
		if res.code != 0 {
			t.Fatalf("deregister failed: %s", res.stderr)
		}
		restCfg, err := clientcmd.RESTConfigFromKubeConfig(regKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, cfg.TrustBundle.SecretName, metav1.GetOptions{})
			return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err), nil
		})
		if err != nil {
			t.Error("the registration's token still reads relay-root-tls-secret after deregister")
		}
		// Retain (the default): the copies stay for the agents.
		if len(secretData(t, w1, ns, cfg.TrustBundle.SecretName)) == 0 {
			t.Error("deregister with deletionPolicy Retain removed relay-root-tls-secret")
		}
	})
}

func waitForCertManagerLease(t *testing.T, cp *framework.ControlPlane) {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var l coordinationv1.Lease
		err := cp.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: install.CertManagerLease}, &l)
		return err == nil && l.Spec.HolderIdentity != nil, nil
	})
	if err != nil {
		t.Fatal("cert-manager's controller did not take its Lease within a minute")
	}
	t.Logf("cert-manager's controller holds its Lease %s after start", time.Since(start).Round(time.Millisecond))
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// relayPKI runs the relay-pki binary under test.
func relayPKI(t *testing.T, timeout time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools.RelayPKI, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run relay-pki %v: %v", args, err)
	}
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// waitForExit re-runs a command until it exits with code.
func waitForExit(t *testing.T, code int, timeout time.Duration, args ...string) cliResult {
	t.Helper()
	var last cliResult
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, func(context.Context) (bool, error) {
		last = relayPKI(t, 30*time.Second, args...)
		return last.code == code, nil
	})
	if err != nil {
		t.Fatalf("relay-pki %v did not exit %d within %s; last exit %d:\n%s%s", args, code, timeout, last.code, last.stdout, last.stderr)
	}
	return last
}

func runBareControlPlane(t *testing.T, name string) *framework.ControlPlane {
	t.Helper()
	start := time.Now()
	cp, err := framework.StartControlPlane(name, t.TempDir(), tools)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane %s log tail:\n%s", cp.Name, cp.LogTail(3000))
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane %s: %v", cp.Name, err)
		}
	})
	t.Logf("control plane %s (no CRDs) started in %s", name, time.Since(start).Round(time.Millisecond))
	return cp
}

// impersonatingKubeconfig writes into dir the admin kubeconfig of cp acting
// as the ServiceAccount ns/name, with the groups the apiserver gives it.
func impersonatingKubeconfig(t *testing.T, cp *framework.ControlPlane, dir, ns, name string) string {
	t.Helper()
	kc, err := clientcmd.Load(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + ns + ":" + name
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	p := filepath.Join(dir, "as-serviceaccount.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func clientFor(t *testing.T, kubeconfig string) client.Client {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(rc, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func currentContext(t *testing.T, kubeconfig string) string {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kc.CurrentContext
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

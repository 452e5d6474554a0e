//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmwebhook "github.com/cert-manager/cert-manager/test/webhook"

	"github.com/relay-pki/relay-pki/e2e/framework"
)

// RunControlPlanes starts the named control planes in parallel and stops
// them when the test ends. Their folders (logs, kubeconfigs) are kept under
// the test's temporary directory and printed on failure.
func RunControlPlanes(t *testing.T, names ...string) map[string]*framework.ControlPlane {
	t.Helper()
	dir := t.TempDir()
	planes := make(map[string]*framework.ControlPlane, len(names))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	start := time.Now()
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp, err := framework.StartControlPlane(name, dir, tools, tools.CertManagerCRDs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			planes[name] = cp
		}()
	}
	wg.Wait()
	for _, cp := range planes {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("control plane %s log tail:\n%s", cp.Name, cp.LogTail(3000))
			}
			if err := cp.Stop(); err != nil {
				t.Errorf("stop control plane %s: %v", cp.Name, err)
			}
		})
	}
	if len(errs) > 0 {
		t.Fatalf("start control planes: %v", errs)
	}
	t.Logf("control planes %v started in %s", names, time.Since(start).Round(time.Millisecond))
	return planes
}

// RunCertManager runs cert-manager's controllers against cp until the test
// ends.
func RunCertManager(t *testing.T, cp *framework.ControlPlane) *framework.Process {
	t.Helper()
	p, err := framework.StartCertManager(cp, tools)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.LogPath)
			t.Logf("cert-manager log tail:\n%s", tail(string(b), 4000))
		}
		if err := p.Stop(); err != nil {
			t.Errorf("stop cert-manager: %v", err)
		}
	})
	return p
}

// RunWebhook serves cert-manager's real validating and mutating webhook in
// process and registers it with cp, so that cp refuses what a production
// cluster's cert-manager would. envtest's WebhookInstallOptions would
// replace the CA bundle with its own, so the configurations are made here.
func RunWebhook(t *testing.T, cp *framework.ControlPlane) {
	t.Helper()
	opts, stop := cmwebhook.StartWebhookServer(t, []string{"--kubeconfig", cp.KubeconfigPath, "--metrics-listen-address=0"})
	t.Cleanup(stop)

	fail := admissionv1.Fail
	none := admissionv1.SideEffectClassNone
	rules := []admissionv1.RuleWithOperations{{
		Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
		Rule: admissionv1.Rule{
			APIGroups: []string{"cert-manager.io", "acme.cert-manager.io"}, APIVersions: []string{"v1"}, Resources: []string{"*/*"},
		},
	}}
	hook := func(path string) admissionv1.WebhookClientConfig {
		u := opts.URL + path
		return admissionv1.WebhookClientConfig{URL: &u, CABundle: opts.CAPEM}
	}
	ctx := t.Context()
	meta := metav1.ObjectMeta{Name: "cert-manager-webhook"}
	if err := cp.Client.Create(ctx, &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionv1.ValidatingWebhook{{
		Name: "webhook.cert-manager.io", ClientConfig: hook("/validate"), Rules: rules,
		FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
	}}}); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Create(ctx, &admissionv1.MutatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionv1.MutatingWebhook{{
		Name: "webhook.cert-manager.io", ClientConfig: hook("/mutate"), Rules: rules,
		FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
	}}}); err != nil {
		t.Fatal(err)
	}
}

func createNamespace(t *testing.T, cp *framework.ControlPlane, name string) {
	t.Helper()
	if err := cp.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("create namespace %s on %s: %v", name, cp.Name, err)
	}
}

// peakRSS adds up the high-water resident memory (VmHWM) of every process
// whose command line mentions dir or has pid in pids.
func peakRSS(dir string, pids ...int) (int64, []string) {
	var total int64
	var who []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		match := strings.Contains(string(cmdline), dir)
		for _, p := range pids {
			match = match || p == pid
		}
		if !match {
			continue
		}
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb * 1024
				name := filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0])
				who = append(who, fmt.Sprintf("%s=%dMiB", name, kb/1024))
			}
		}
	}
	return total, who
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func within(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

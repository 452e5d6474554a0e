//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

// TestControllerFaults: two controller replicas with leader election, 20
// logical clusters on two workload apiservers, and faults: cert-manager down
// when a renewal falls due, the leader SIGKILLed mid fan-out, a slow remote
// behind a delaying proxy, and a remote that flaps for a minute.
func TestControllerFaults(t *testing.T) {
	planes := RunControlPlanes(t, "management", "workload-1", "workload-2")
	mgmt, w1, w2 := planes["management"], planes["workload-1"], planes["workload-2"]
	certManager := RunCertManager(t, mgmt)
	cfg := config.Default()
	ns := cfg.Namespace
	createNamespace(t, mgmt, ns)
	createNamespace(t, mgmt, regNS)
	dir := t.TempDir()
	// The server certificate is due for renewal 10 s after each issuance,
	// so a renewal falls due while cert-manager is down.
	cfgFile := filepath.Join(dir, "relay-pki.yaml")
	if err := os.WriteFile(cfgFile, []byte("apiVersion: relay-pki.io/v1alpha1\nkind: Config\nsync: {resyncPeriod: 1m}\nserver: {duration: 1h, renewBefore: 59m50s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startReplica := func(name string) (*framework.Process, string) {
		t.Helper()
		port := freePort(t)
		p, err := framework.StartProcess(name, dir, tools.RelayPKI, nil,
			"controller", "--kubeconfig", mgmt.KubeconfigPath, "--config", cfgFile, "--registration-namespace", regNS,
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port), "--health-probe-bind-address", "0", "--connect-timeout", "10s", "-v", "2")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(p.LogPath)
				t.Logf("%s log tail:\n%s", name, tail(string(b), 4000))
			}
			_ = p.Stop()
		})
		return p, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	}
	a, aMetrics := startReplica("replica-a")
	waitForLogLine(t, a.LogPath, 0, time.Minute, "Successfully acquired lease")
	b, bMetrics := startReplica("replica-b")
	if err := framework.WaitForCertificates(t.Context(), mgmt.Client, ns,
		[]string{issuer.RootCertificateName, issuer.ServerCertificateName, issuer.SigningCertificateName}, 2*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	// 20 logical clusters, each its own target namespace, spread over the
	// two workload apiservers.
	type logical struct {
		name string
		cp   *framework.ControlPlane
	}
	var fleet []logical
	for i := range 20 {
		cp := w1
		if i%2 == 1 {
			cp = w2
		}
		name := fmt.Sprintf("fleet-%02d", i)
		register(t, mgmt, name, cp, map[string]string{relaysync.NamespaceAnnotation: name})
		fleet = append(fleet, logical{name, cp})
	}
	tokenNow := func() []byte { return secretData(t, mgmt, ns, cfg.IdentityToken.SecretName)[cfg.IdentityToken.Key] }
	converged := func(t *testing.T, members []logical, timeout time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		want := tokenNow()
		for _, l := range members {
			waitForSecret(t, l.cp, l.name, cfg.IdentityToken.SecretName, "token", want, timeout)
		}
		return time.Since(start)
	}
	converged(t, fleet, 2*time.Minute)
	for _, l := range fleet {
		waitForState(t, mgmt, l.name, relaysync.StateSynced, time.Minute)
	}

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("3: cert-manager down when a renewal falls due: reported overdue, converges when back", func(t *testing.T) {
		if err := certManager.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		var res cliResult
		overdue := ""
		if err := wait.PollUntilContextTimeout(t.Context(), time.Second, 2*time.Minute, true, func(context.Context) (bool, error) {
			res = relayPKI(t, 30*time.Second, "status", "--kubeconfig", mgmt.KubeconfigPath, "--config", cfgFile)
			for _, l := range strings.Split(res.stdout, "\n") {
				if strings.Contains(l, "renewal overdue") {
					overdue = strings.TrimSpace(l)
				}
			}
			return overdue != "" && res.code == 1, nil
		}); err != nil {
			t.Fatalf("status did not report the overdue renewal (exit %d):\n%s", res.code, res.stdout)
		}
		t.Logf("%s after cert-manager stopped: status: %s", time.Since(stopped).Round(time.Second), overdue)
		if !hasEvent(t, mgmt, ns, issuer.ServerCertificateName, "RenewalOverdue") {
			t.Error("no RenewalOverdue event")
		}
		if v := metricValue(t, aMetrics, `relay_pki_certificate_renewal_overdue{certificate="relay-server-tls",role="server"}`); v != 1 {
			t.Errorf("relay_pki_certificate_renewal_overdue = %v, want 1", v)
		}
		before := secretData(t, mgmt, ns, cfg.Server.SecretName)["tls.crt"]
		start := time.Now()
		if err := certManager.Start(); err != nil {
			t.Fatal(err)
		}
		waitForChange(t, mgmt, ns, cfg.Server.SecretName, before, 2*time.Minute)
		t.Logf("renewed %s after cert-manager was started again", time.Since(start).Round(time.Millisecond))
	})

	step("1: the leader is SIGKILLed mid fan-out; the standby takes over within the lease and every cluster converges", func(t *testing.T) {
		res := relayPKI(t, time.Minute, "rotate", "token", "--kubeconfig", mgmt.KubeconfigPath)
		if res.code != 0 {
			t.Fatalf("rotate token: %s", res.stderr)
		}
		time.Sleep(20 * time.Millisecond)
		killed := time.Now()
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		holder := leaseHolder(t, mgmt)
		if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			h := leaseHolder(t, mgmt)
			return h != "" && h != holder, nil
		}); err != nil {
			t.Fatalf("the standby did not take the lease from %s", holder)
		}
		takeover := time.Since(killed)
		all := converged(t, fleet, 2*time.Minute)
		t.Logf("takeover %s after SIGKILL (lease duration 15s); all 20 clusters hold the new token %s after the takeover", takeover.Round(time.Millisecond), all.Round(time.Millisecond))
		// The standby may take a lease only 15 s (its duration) after the
		// last renewal, and tries every 2 s with up to 20% jitter; on two
		// busy cores that has been measured at 15.3-19.0 s.
		if takeover > 25*time.Second {
			t.Errorf("takeover took %s, far past the 15 s lease plus a jittered 2 s retry", takeover)
		}
	})
	_ = b

	var w1Fleet []logical
	for _, l := range fleet {
		if l.cp == w1 {
			w1Fleet = append(w1Fleet, l)
		}
	}
	fanout := func(t *testing.T) time.Duration {
		t.Helper()
		res := relayPKI(t, time.Minute, "rotate", "token", "--kubeconfig", mgmt.KubeconfigPath)
		if res.code != 0 {
			t.Fatalf("rotate token: %s", res.stderr)
		}
		return converged(t, w1Fleet, time.Minute)
	}

	step("5: a slow remote does not slow the fan-out to the others", func(t *testing.T) {
		baseline := fanout(t)
		proxy := startSlowProxy(t, w2, 300*time.Millisecond)
		kc := kubeconfigWithServer(t, w2, "https://"+proxy)
		for i := range 3 {
			createRegistration(t, mgmt, fmt.Sprintf("slow-%d", i), fmt.Sprintf("slow-%d", i), kc, map[string]string{relaysync.NamespaceAnnotation: fmt.Sprintf("slow-%d", i)})
		}
		time.Sleep(time.Second)
		slowed := fanout(t)
		t.Logf("fan-out to the 10 workload-1 clusters: %s without, %s with 3 clusters behind a proxy that holds every chunk 300ms (a request: seconds)", baseline.Round(time.Millisecond), slowed.Round(time.Millisecond))
		if slowed > baseline+3*time.Second {
			t.Errorf("the slow remote slowed the others: %s vs %s", slowed, baseline)
		}
		for i := range 3 {
			waitForState(t, mgmt, fmt.Sprintf("slow-%d", i), relaysync.StateSynced, 2*time.Minute)
		}
	})

	step("4: a remote that flaps for a minute: goroutines and heap return to their level, and it converges", func(t *testing.T) {
		gBefore, hBefore := metricValue(t, bMetrics, "go_goroutines"), metricValue(t, bMetrics, "go_memstats_heap_inuse_bytes")
		end := time.Now().Add(time.Minute)
		cycles := 0
		for time.Now().Before(end) {
			if err := w2.StopProcesses(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			if err := w2.StartProcesses(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			cycles++
		}
		var w2Fleet []logical
		for _, l := range fleet {
			if l.cp == w2 {
				w2Fleet = append(w2Fleet, l)
			}
		}
		start := time.Now()
		converged(t, w2Fleet, 3*time.Minute)
		for _, l := range w2Fleet {
			waitForState(t, mgmt, l.name, relaysync.StateSynced, 2*time.Minute)
		}
		t.Logf("workload-2 flapped %d times in a minute; its 10 clusters converged %s after the last start", cycles, time.Since(start).Round(time.Millisecond))
		time.Sleep(10 * time.Second)
		gAfter, hAfter := metricValue(t, bMetrics, "go_goroutines"), metricValue(t, bMetrics, "go_memstats_heap_inuse_bytes")
		t.Logf("controller goroutines %v -> %v, heap in use %.1f MiB -> %.1f MiB", gBefore, gAfter, hBefore/(1<<20), hAfter/(1<<20))
		if gAfter > gBefore*1.1+10 {
			t.Errorf("goroutines grew from %v to %v", gBefore, gAfter)
		}
		if hAfter > hBefore*1.5+8<<20 {
			t.Errorf("heap grew from %.1f to %.1f MiB", hBefore/(1<<20), hAfter/(1<<20))
		}
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func leaseHolder(t *testing.T, cp *framework.ControlPlane) string {
	t.Helper()
	var l coordinationv1.Lease
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: regNS, Name: "relay-pki-controller"}, &l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// metricValue reads one series from a Prometheus text endpoint.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			return v
		}
	}
	t.Fatalf("no series %s at %s", series, url)
	return 0
}

// startSlowProxy forwards TCP to cp's apiserver, holding every chunk from
// the apiserver for delay: a cluster on a slow link.
func startSlowProxy(t *testing.T, cp *framework.ControlPlane, delay time.Duration) string {
	t.Helper()
	u, err := url.Parse(cp.Config.Host)
	if err != nil || u.Host == "" {
		t.Fatalf("apiserver address %q: %v", cp.Config.Host, err)
	}
	upstream := u.Host
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); _ = l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(delay):
						}
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { <-ctx.Done(); c.Close(); up.Close() }()
		}
	}()
	return l.Addr().String()
}

func kubeconfigWithServer(t *testing.T, cp *framework.ControlPlane, server string) []byte {
	t.Helper()
	kc, err := clientcmd.Load(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = server
	}
	out, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

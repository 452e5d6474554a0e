// Command demo is `make demo`: relay-pki's main job on an embedded local
// environment. It starts a management and workload control planes with
// cert-manager's real controllers, installs the relay PKI from
// `relay-pki render`, waits for it, and prints what was issued. It runs until
// Ctrl-C (or exits after the table with --exit-when-ready) and leaves no
// process behind either way.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/inspect"
	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/register"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

// registrationNamespace holds the demo's cluster registrations.
const registrationNamespace = "relay-pki-system"

type options struct {
	relayPKI      string
	configFile    string
	workDir       string
	workloads     int
	exitWhenReady bool
	timeout       time.Duration
}

func main() {
	var o options
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.StringVar(&o.relayPKI, "relay-pki", os.Getenv("RELAY_PKI_BINARY"), "relay-pki binary to render with and run as the controller (default $RELAY_PKI_BINARY)")
	fs.StringVar(&o.configFile, "config", "", "relay-pki configuration file passed to render (default: built-in defaults)")
	fs.StringVar(&o.workDir, "work-dir", ".cache/demo", "folder for the control planes' data, logs and kubeconfigs (emptied at start)")
	fs.IntVar(&o.workloads, "workload-clusters", 2, "number of workload control planes")
	fs.BoolVar(&o.exitWhenReady, "exit-when-ready", false, "stop everything and exit 0 once the certificate table is printed")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the certificates")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	stop()
	// Whatever happened, nothing we started may outlive us.
	framework.StopAll()
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		fmt.Println("interrupted: stopped every control plane and controller")
	default:
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out io.Writer) error {
	tools, err := framework.ToolsFromEnv()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(o.workDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}

	names := []string{"management"}
	for i := 1; i <= o.workloads; i++ {
		names = append(names, fmt.Sprintf("workload-%d", i))
	}
	step(out, "starting %d control planes (kube-apiserver + etcd each): %v", len(names), names)
	planes, err := startPlanes(out, o.workDir, tools, names)
	if err != nil {
		return err
	}
	mgmt := planes["management"]

	step(out, "starting cert-manager's controllers on management (a separate process, like its Deployment)")
	if _, err := framework.StartCertManager(mgmt, tools); err != nil {
		return err
	}

	step(out, "rendering the relay PKI with %s render", o.relayPKI)
	objs, err := render(ctx, o)
	if err != nil {
		return err
	}
	ns := objs[0].GetNamespace()
	// Only the management cluster gets the namespaces by hand: the
	// controller creates the target namespace in workload clusters.
	for _, n := range []string{ns, registrationNamespace} {
		if err := mgmt.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			return fmt.Errorf("create namespace %s on management: %w", n, err)
		}
	}
	step(out, "server-side applying %d objects to management/%s (field manager %s)", len(objs), ns, ssa.FieldManager)
	if err := ssa.Apply(ctx, mgmt.Client, objs); err != nil {
		return err
	}

	var certs []string
	for _, u := range objs {
		if u.GetKind() == cmapi.CertificateKind {
			certs = append(certs, u.GetName())
		}
	}
	step(out, "waiting for %d certificates to be issued by cert-manager", len(certs))
	if err := framework.WaitForCertificates(ctx, mgmt.Client, ns, certs, o.timeout, func(name string, after time.Duration) {
		fmt.Fprintf(out, "   ✓ Certificate %s Ready after %s\n", name, after.Round(time.Millisecond))
	}); err != nil {
		return err
	}

	relayCfg, err := loadConfig(o.configFile)
	if err != nil {
		return err
	}
	step(out, "registering %d workload clusters as relay-pki register does: a least-privilege ServiceAccount there, a Secret labelled %s in %s here", o.workloads, relaysync.ClusterLabel, registrationNamespace)
	for _, n := range names[1:] {
		res, err := register.Register(ctx, mgmt.Client, planes[n].Config, register.Options{
			Cluster: n, Config: relayCfg, RegistrationNamespace: registrationNamespace, TokenTTL: 24 * time.Hour,
		})
		if err != nil {
			return fmt.Errorf("register %s: %w", n, err)
		}
		fmt.Fprintf(out, "   ✓ %s: ServiceAccount %s/%s, token until %s\n", n, res.TargetNamespace, register.ServiceAccountName, res.TokenExpires.UTC().Format(time.RFC3339))
	}
	step(out, "starting relay-pki controller (logs: %s)", framework.LogPath(mgmt, "relay-pki-controller"))
	args := []string{"controller", "--kubeconfig", mgmt.KubeconfigPath, "--registration-namespace", registrationNamespace,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}
	if o.configFile != "" {
		args = append(args, "--config", o.configFile)
	}
	if _, err := framework.StartProcess("relay-pki-controller", mgmt.Dir(), o.relayPKI, nil, args...); err != nil {
		return err
	}
	step(out, "waiting for every workload cluster to hold ca.crt and the identity token")
	syncStart := time.Now()
	if err := waitForSync(ctx, mgmt.Client, names[1:], o.timeout, func(n string) {
		fmt.Fprintf(out, "   ✓ %s Synced after %s\n", n, time.Since(syncStart).Round(time.Millisecond))
	}); err != nil {
		return err
	}

	fmt.Fprintln(out)
	if err := printCertificates(ctx, out, mgmt.Client, ns, certs); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := printClusters(ctx, out, mgmt, planes, names, ns); err != nil {
		return err
	}
	snap, err := inspect.Take(ctx, mgmt.Client, inspect.Options{Config: relayCfg, RegistrationNamespace: registrationNamespace, Timeout: 10 * time.Second, Parallel: 4})
	if err != nil {
		return err
	}
	findings := inspect.Verify(snap, inspect.Thresholds{WarnDays: 30, ErrorDays: 7})
	errs, warns := inspect.Errors(findings)
	verdict := "healthy"
	if st := inspect.StatusOf(snap); !st.Healthy {
		verdict = fmt.Sprintf("unhealthy (%d problems)", len(st.Problems))
	}
	fmt.Fprintf(out, "\nrelay-pki status: %s; relay-pki verify: %d checks, %d errors, %d warnings\n", verdict, len(findings), errs, warns)
	fmt.Fprintln(out, "\nkubeconfigs (try: kubectl --kubeconfig <file> get certificates,secrets -n "+ns+"):")
	for _, n := range names {
		fmt.Fprintf(out, "  %-12s %s\n", n, planes[n].KubeconfigPath)
	}
	fmt.Fprintf(out, "logs: %s/<cluster>/control-plane.log, %s/management/{cert-manager-controller,relay-pki-controller}.log\n", o.workDir, o.workDir)

	if o.exitWhenReady {
		step(out, "--exit-when-ready: stopping everything")
		return nil
	}
	fmt.Fprintln(out, "\nrunning; press Ctrl-C to stop every control plane and controller")
	<-ctx.Done()
	return ctx.Err()
}

func step(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "%s ▸ %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func startPlanes(out io.Writer, dir string, tools framework.Tools, names []string) (map[string]*framework.ControlPlane, error) {
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		errs   []error
		planes = map[string]*framework.ControlPlane{}
	)
	start := time.Now()
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp, err := framework.StartControlPlane(n, dir, tools, tools.CertManagerCRDs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			planes[n] = cp
			fmt.Fprintf(out, "   ✓ %s up after %s\n", n, time.Since(start).Round(time.Millisecond))
		}()
	}
	wg.Wait()
	return planes, errors.Join(errs...)
}

// render runs the real binary, as a user would before `kubectl apply`.
func render(ctx context.Context, o options) ([]*unstructured.Unstructured, error) {
	args := []string{"render"}
	if o.configFile != "" {
		args = append(args, "--config", o.configFile)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, o.relayPKI, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", filepath.Base(o.relayPKI), args, err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&stdout, 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("decode render output: %w", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	if len(objs) == 0 {
		return nil, errors.New("render printed no objects")
	}
	return objs, nil
}

func printCertificates(ctx context.Context, out io.Writer, c client.Client, ns string, names []string) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tSECRET\tISSUER\tNOT AFTER\tSHA-256 FINGERPRINT\tCHAIN")
	for _, n := range names {
		var crt cmapi.Certificate
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &crt); err != nil {
			return err
		}
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: crt.Spec.SecretName}, &s); err != nil {
			return err
		}
		chain := "OK"
		var leaf *x509.Certificate
		roots, err := certinfo.ParsePEM(s.Data["ca.crt"])
		if err == nil {
			leaf, err = certinfo.VerifyChain(s.Data["tls.crt"], roots, time.Now())
		}
		if err != nil {
			chain = "FAIL: " + err.Error()
		}
		notAfter, fp := "-", "-"
		if leaf != nil {
			notAfter, fp = leaf.NotAfter.UTC().Format(time.RFC3339), certinfo.Fingerprint(leaf)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%s\n", n, crt.Spec.SecretName, crt.Spec.IssuerRef.Kind, crt.Spec.IssuerRef.Name, notAfter, fp, chain)
	}
	return tw.Flush()
}

// waitForSync waits until each registration reports Synced.
func waitForSync(ctx context.Context, c client.Client, names []string, timeout time.Duration, onSynced func(string)) error {
	done := map[string]bool{}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for len(done) < len(names) {
		for _, n := range names {
			if done[n] {
				continue
			}
			var reg corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: registrationNamespace, Name: n}, &reg); err == nil && reg.Annotations[relaysync.StateAnnotation] == string(relaysync.StateSynced) {
				done[n] = true
				onSynced(n)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clusters not Synced within %s: %w", timeout, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// printClusters shows each cluster's sync state next to what it holds,
// compared with the management cluster's copies.
func printClusters(ctx context.Context, out io.Writer, mgmt *framework.ControlPlane, planes map[string]*framework.ControlPlane, names []string, ns string) error {
	var trustSecret, tokenSecret corev1.Secret
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "relay-root-tls-secret"}, &trustSecret); err != nil {
		return err
	}
	if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "relay-identity-token-secret"}, &tokenSecret); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tSTATE\tCA.CRT SHA-256\tCA.CRT = MGMT\tTOKEN = MGMT\tKEYS\tSYNCED AT")
	for _, n := range names {
		state, syncedAt := "source", "-"
		if n != "management" {
			var reg corev1.Secret
			if err := mgmt.Client.Get(ctx, client.ObjectKey{Namespace: registrationNamespace, Name: n}, &reg); err != nil {
				return err
			}
			state, syncedAt = reg.Annotations[relaysync.StateAnnotation], reg.Annotations[relaysync.SyncedAtAnnotation]
		}
		var tr, tk corev1.Secret
		c := planes[n].Client
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "relay-root-tls-secret"}, &tr); err != nil {
			return err
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "relay-identity-token-secret"}, &tk); err != nil {
			return err
		}
		keys := fmt.Sprintf("%d+%d", len(tr.Data), len(tk.Data))
		sum := sha256.Sum256(tr.Data["ca.crt"])
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\t%s\n", n, state, hex.EncodeToString(sum[:8]),
			bytes.Equal(tr.Data["ca.crt"], trustSecret.Data["ca.crt"]), bytes.Equal(tk.Data["token"], tokenSecret.Data["token"]), keys, syncedAt)
	}
	return tw.Flush()
}

// loadConfig is the configuration the controller gets: the file, or the
// defaults.
func loadConfig(path string) (*config.Config, error) {
	c := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	if path != "" {
		var err error
		if c, err = config.ReadFile(path); err != nil {
			return nil, err
		}
	}
	if err := config.Complete(c); err != nil {
		return nil, err
	}
	return c, nil
}

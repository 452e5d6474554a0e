// Command bench is `make bench`: relay-pki's fan-out latency, steady-state
// cost, memory per cluster and cold start, measured on real apiservers
// side by side with the floor (the bench server-side applying the same
// Secrets itself) and the seed's kubectl loop. It starts a management and
// two remote control planes, registers N logical clusters spread over the
// remote apiservers (each its own user and target namespace), runs
// `relay-pki controller` as a separate process and observes every target
// Secret with its own watches. It prints a Markdown table and writes
// bench-results.json and fanout.png, and keeps the controller's pprof
// profiles of the largest N.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/rotate"
)

type options struct {
	sizes      []int
	kubectlMax int
	steady     time.Duration
	workDir    string
	outDir     string
	profileDir string
	timeout    time.Duration
	repeat     int
	replot     string
	// controllerArgs are extra flags for relay-pki controller, to compare
	// settings such as --max-concurrent-syncs.
	controllerArgs []string
}

func main() {
	var o options
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.IntSliceVar(&o.sizes, "sizes", []int{10, 100, 1000}, "numbers of registered clusters to measure at, ascending")
	fs.IntVar(&o.kubectlMax, "kubectl-max", 100, "largest N the kubectl loop runs for; above it the loop's time is extrapolated")
	fs.DurationVar(&o.steady, "steady", 60*time.Second, "how long the steady-state window lasts")
	fs.StringVar(&o.workDir, "work-dir", ".cache/bench", "folder for the control planes, kubeconfigs and logs (emptied at start)")
	fs.StringVar(&o.outDir, "out", ".", "folder for bench-results.json and fanout.png")
	fs.StringVar(&o.profileDir, "profile-dir", "", "folder for the controller's pprof profiles (default: <work-dir>/profiles)")
	fs.StringVar(&o.replot, "replot", "", "only redraw fanout.png in --out from this bench-results.json")
	fs.IntVar(&o.repeat, "repeat", 5, "runs of each relay-pki and floor fan-out; the median counts")
	fs.StringSliceVar(&o.controllerArgs, "controller-args", nil, "extra flags for relay-pki controller, such as --max-concurrent-syncs=10 (default: none, the shipped defaults)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long one fan-out or convergence may take")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if o.repeat < 1 {
		fmt.Fprintln(os.Stderr, "--repeat: must be at least 1")
		os.Exit(2)
	}
	if !slices.IsSorted(o.sizes) || len(o.sizes) == 0 || o.sizes[0] < 1 {
		fmt.Fprintln(os.Stderr, "--sizes: give positive numbers in ascending order, such as 10,100,1000")
		os.Exit(2)
	}
	if o.replot != "" {
		var r results
		b, err := os.ReadFile(o.replot)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err == nil {
			err = plotFanout(filepath.Join(o.outDir, "fanout.png"), &r)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "replot:", err)
			os.Exit(1)
		}
		return
	}
	if o.profileDir == "" {
		o.profileDir = filepath.Join(o.workDir, "profiles")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	stop()
	framework.StopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench failed:", err)
		os.Exit(1)
	}
}

// bench is one run's parts.
type bench struct {
	o        options
	log      io.Writer
	cfg      *config.Config
	tools    framework.Tools
	mgmt     *framework.ControlPlane
	mgmtCS   kubernetes.Interface
	remotes  []*framework.ControlPlane
	remoteCS []kubernetes.Interface
	obs      *observer

	controller  *framework.Process
	metricsAddr string
	pprofAddr   string

	clusters []cluster
	token    []byte
	trust    []byte
	roots    *pki

	res results
}

// The names the floor and the kubectl loop write: other Secrets than
// relay-pki's, in the same namespaces, so the three ways never fight.
const (
	floorToken   = "bench-floor-token"
	floorTrust   = "bench-floor-trust"
	kubectlToken = "bench-kubectl-token"
	kubectlTrust = "bench-kubectl-trust"
)

func run(ctx context.Context, o options, out io.Writer) error {
	tools, err := framework.ToolsFromEnv()
	if err != nil {
		return err
	}
	if tools.Kubectl == "" {
		return errors.New("RELAY_PKI_KUBECTL is not set or not built: run the benchmark with `make bench`, which builds kubectl")
	}
	if err := os.RemoveAll(o.workDir); err != nil {
		return err
	}
	for _, d := range []string{o.workDir, o.outDir, o.profileDir, filepath.Join(o.workDir, "kubeconfigs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	b := &bench{o: o, log: os.Stderr, cfg: config.Default(), tools: tools, obs: &observer{}}
	b.res.Machine = fmt.Sprintf("%d cores, %s", runtime.NumCPU(), runtime.Version())
	b.res.Memory.RSSMiB = map[string]float64{}
	if err := b.start(ctx); err != nil {
		return err
	}
	for _, n := range o.sizes {
		if err := b.grow(ctx, n); err != nil {
			return err
		}
		for _, change := range []string{"token", "trust"} {
			if err := b.fanout(ctx, n, change); err != nil {
				return err
			}
		}
	}
	if err := b.steadyState(ctx); err != nil {
		return err
	}
	if err := b.coldStart(ctx); err != nil {
		return err
	}

	b.finishMemory()
	if err := writeJSON(filepath.Join(o.outDir, "bench-results.json"), &b.res); err != nil {
		return err
	}
	if err := plotFanout(filepath.Join(o.outDir, "fanout.png"), &b.res); err != nil {
		return err
	}
	markdown(out, &b.res)
	b.logf("wrote %s, %s and %d profiles", filepath.Join(o.outDir, "bench-results.json"), filepath.Join(o.outDir, "fanout.png"), len(b.res.Profiles))
	return nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (b *bench) start(ctx context.Context) error {
	names := apiserverNames
	b.logf("starting control planes %v", names)
	planes := make([]*framework.ControlPlane, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			var crds []string
			if i == 0 {
				crds = []string{b.tools.CertManagerCRDs}
			}
			planes[i], errs[i] = framework.StartControlPlane(name, b.o.workDir, b.tools, crds...)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.mgmt, b.remotes = planes[0], planes[1:]
	var err error
	if b.mgmtCS, err = fastClient(b.mgmt.Config); err != nil {
		return err
	}
	for _, r := range b.remotes {
		cs, err := fastClient(r.Config)
		if err != nil {
			return err
		}
		b.remoteCS = append(b.remoteCS, cs)
	}

	c := b.cfg
	p, err := newPKI()
	if err != nil {
		return err
	}
	if err := seedManagement(ctx, b.mgmtCS, c.Namespace, p, c.Server.SecretName, c.Signing.SecretName); err != nil {
		return err
	}
	b.trust = p.rootA
	b.roots = p

	var synced []toolscache.InformerSynced
	synced = append(synced,
		b.obs.watchSecret(ctx, b.mgmtCS, c.TrustBundle.SecretName, "ca.crt"),
		b.obs.watchSecret(ctx, b.mgmtCS, c.IdentityToken.SecretName, c.IdentityToken.Key))
	for _, cs := range b.remoteCS {
		for name, key := range map[string]string{
			c.TrustBundle.SecretName: "ca.crt", c.IdentityToken.SecretName: c.IdentityToken.Key,
			floorTrust: "ca.crt", floorToken: c.IdentityToken.Key, kubectlTrust: "ca.crt", kubectlToken: c.IdentityToken.Key,
		} {
			synced = append(synced, b.obs.watchSecret(ctx, cs, name, key))
		}
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return errors.New("the bench's watches did not sync")
	}

	cfgFile := filepath.Join(b.o.workDir, "relay-pki.yaml")
	body := fmt.Sprintf(`apiVersion: relay-pki.io/v1alpha1
kind: Config
issuer:
  issuerRef: {kind: ClusterIssuer, name: bench-external}
trustBundle:
  source:
    configMapRef: {name: %s, key: ca.crt}
`, trustSourceName)
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		return err
	}
	if b.metricsAddr, err = freeAddr(); err != nil {
		return err
	}
	if b.pprofAddr, err = freeAddr(); err != nil {
		return err
	}
	b.logf("starting relay-pki controller (metrics %s, pprof %s)", b.metricsAddr, b.pprofAddr)
	started := time.Now()
	args := append([]string{"controller", "--kubeconfig", b.mgmt.KubeconfigPath, "--config", cfgFile,
		"--registration-namespace", registrationNamespace, "--manage-issuers=false",
		"--metrics-bind-address", b.metricsAddr, "--health-probe-bind-address", "0", "--pprof-bind-address", b.pprofAddr},
		b.o.controllerArgs...)
	b.controller, err = framework.StartProcess("relay-pki-controller", b.o.workDir, b.tools.RelayPKI, nil, args...)
	if err != nil {
		return err
	}
	// The controller publishes the verified bundle and mints the token.
	mgmtNS := []string{c.Namespace}
	if _, err := b.obs.waitAll(ctx, c.TrustBundle.SecretName, mgmtNS, b.trust, started, b.o.timeout); err != nil {
		return fmt.Errorf("%w (controller log: %s)", err, b.controller.LogPath)
	}
	if b.token, err = b.newToken(ctx, nil); err != nil {
		return err
	}
	return b.recordRSS(ctx, 0)
}

// fastClient is an admin client without client-side rate limiting: the
// floor must be limited only by the apiservers.
func fastClient(cfg *rest.Config) (kubernetes.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	c.UserAgent = "relay-pki-bench"
	return kubernetes.NewForConfig(c)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// newToken is the management cluster's token once it differs from old, as
// the bench's watch of it saw it: no second read of what is watched.
func (b *bench) newToken(ctx context.Context, old []byte) ([]byte, error) {
	got, err := b.obs.waitNew(ctx, b.cfg.IdentityToken.SecretName, b.cfg.Namespace, old, b.o.timeout)
	return got.value, err
}
func namespaces(clusters []cluster) []string {
	ns := make([]string, len(clusters))
	for i, c := range clusters {
		ns[i] = c.namespace
	}
	return ns
}

// grow registers clusters up to n and waits until relay-pki has synced
// them all, then records the controller's memory.
func (b *bench) grow(ctx context.Context, n int) error {
	from := len(b.clusters)
	b.logf("registering clusters %d..%d", from, n-1)
	start := time.Now()
	added, err := addClusters(ctx, b.mgmtCS, b.remotes, filepath.Join(b.o.workDir, "kubeconfigs"), from, n)
	if err != nil {
		return err
	}
	b.clusters = append(b.clusters, added...)
	c := b.cfg
	addedNS := namespaces(added)
	if _, err := b.obs.waitAll(ctx, c.TrustBundle.SecretName, addedNS, b.trust, start, b.o.timeout); err != nil {
		return err
	}
	if _, err := b.obs.waitAll(ctx, c.IdentityToken.SecretName, addedNS, b.token, start, b.o.timeout); err != nil {
		return err
	}
	if err := b.waitSynced(ctx, n); err != nil {
		return err
	}
	b.logf("N=%d: %d new clusters registered and synced in %s", n, n-from, time.Since(start).Round(time.Millisecond))
	if err := b.recordRSS(ctx, n); err != nil {
		return err
	}
	if n == b.o.sizes[len(b.o.sizes)-1] {
		b.profile(ctx, "/debug/pprof/heap", fmt.Sprintf("heap-n%d.pprof", n))
		b.profile(ctx, "/debug/pprof/goroutine", fmt.Sprintf("goroutine-n%d.pprof", n))
	}
	// The floor's and the loop's Secrets start from the same values.
	for name, v := range map[string][]byte{floorToken: b.token, kubectlToken: b.token, floorTrust: b.trust, kubectlTrust: b.trust} {
		key := c.IdentityToken.Key
		if name == floorTrust || name == kubectlTrust {
			key = "ca.crt"
		}
		if err := applyAll(ctx, b.remoteCS, added, name, key, v, 32); err != nil {
			return err
		}
	}
	return nil
}

// waitSynced waits until the controller reports n clusters Synced.
func (b *bench) waitSynced(ctx context.Context, n int) error {
	deadline := time.Now().Add(b.o.timeout)
	for {
		m, err := scrapeController(ctx, b.metricsAddr)
		if err == nil && int(m.synced) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the controller reports %v of %d clusters Synced after %s (last error: %v)", m.synced, n, b.o.timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// recordRSS lets the controller settle, then reads its resident memory.
func (b *bench) recordRSS(ctx context.Context, n int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	rss, err := rssMiB(b.controller.PID())
	if err != nil {
		return err
	}
	b.res.Memory.RSSMiB[strconv.Itoa(n)] = round(rss, 1)
	b.logf("N=%d: controller RSS %.1f MiB", n, rss)
	return nil
}

func (b *bench) finishMemory() {
	var xs, ys []float64
	for k, v := range b.res.Memory.RSSMiB {
		xs = append(xs, float64(atoi(k)))
		ys = append(ys, v)
	}
	b.res.Memory.PerClusterMiB = round(slope(xs, ys), 4)
	largest := b.o.sizes[len(b.o.sizes)-1]
	b.res.Memory.BudgetMiB = 40 + 0.25*float64(largest)
}

func (b *bench) profile(ctx context.Context, path, file string) {
	f := filepath.Join(b.o.profileDir, file)
	if err := fetchProfile(ctx, b.pprofAddr, path, f); err != nil {
		b.logf("profile %s: %v", path, err)
		return
	}
	b.res.Profiles = append(b.res.Profiles, file)
}

// fanout makes one change three ways at N clusters and records the times.
// relay-pki and the floor are timed --repeat times and the median run
// counts: one run on two shared cores varies by tens of percent.
func (b *bench) fanout(ctx context.Context, n int, change string) error {
	ns := namespaces(b.clusters)
	f := fanout{N: n, Change: change, Runs: b.o.repeat}
	largest := n == b.o.sizes[len(b.o.sizes)-1]

	type run struct {
		lat     []time.Duration
		publish *float64
	}
	var runs []run
	var key string
	var value []byte
	for rep := range b.o.repeat {
		var cpuProfile sync.WaitGroup
		if largest && rep == 0 {
			cpuProfile.Go(func() {
				b.profile(ctx, "/debug/pprof/profile?seconds=10", fmt.Sprintf("cpu-fanout-%s-n%d.pprof", change, n))
			})
		}
		lat, publish, k, v, err := b.relayOnce(ctx, n, change, ns)
		if err != nil {
			return err
		}
		cpuProfile.Wait()
		runs = append(runs, run{lat, publish})
		key, value = k, v
		f.RelayRunsS = append(f.RelayRunsS, secs(lat[len(lat)-1]))
	}
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.lat[len(a.lat)-1], b.lat[len(b.lat)-1]) })
	med := runs[len(runs)/2]
	f.RelayPKIS = secs(med.lat[len(med.lat)-1])
	f.FirstS, f.P50S, f.P99S, f.MaxS = secs(med.lat[0]), secs(percentile(med.lat, 50)), secs(percentile(med.lat, 99)), f.RelayPKIS
	f.PublishS = med.publish

	// The floor: the same change, the bench's own parallel applies. Every
	// run writes a value of its own (the new one, marked), so each is a
	// real change.
	floorName, loopName := floorToken, kubectlToken
	if change == "trust" {
		floorName, loopName = floorTrust, kubectlTrust
	}
	for _, workers := range floorWorkers {
		var times []float64
		for rep := range b.o.repeat {
			v := append(slices.Clone(value), fmt.Sprintf("\n# floor %d workers, run %d, %d", workers, rep, time.Now().UnixNano())...)
			start := time.Now()
			if err := applyAll(ctx, b.remoteCS, b.clusters, floorName, key, v, workers); err != nil {
				return err
			}
			lat, err := b.obs.waitAll(ctx, floorName, ns, v, start, b.o.timeout)
			if err != nil {
				return fmt.Errorf("floor %s fan-out with %d workers: %w", change, workers, err)
			}
			times = append(times, secs(lat[len(lat)-1]))
		}
		slices.Sort(times)
		if m := times[len(times)/2]; f.FloorS == 0 || m < f.FloorS {
			f.FloorS, f.FloorWorkers = m, workers
		}
	}
	f.RelayOverFloor = round(f.RelayPKIS/f.FloorS, 2)

	// The seed's kubectl loop, once, where it takes minutes rather than
	// hours.
	if n <= b.o.kubectlMax {
		start := time.Now()
		if err := runKubectlLoop(ctx, b.tools.Kubectl, b.o.workDir, b.clusters, loopName, key, value); err != nil {
			return err
		}
		lat, err := b.obs.waitAll(ctx, loopName, ns, value, start, b.o.timeout)
		if err != nil {
			return fmt.Errorf("kubectl loop %s fan-out: %w", change, err)
		}
		f.KubectlLoopS = ptr(secs(lat[len(lat)-1]))
		f.KubectlOverRelay = ptr(round(*f.KubectlLoopS/f.RelayPKIS, 1))
	} else if measured := b.lastLoop(change); measured != nil {
		f.KubectlLoopExtrapolatedS = ptr(math.Round(*measured.KubectlLoopS / float64(measured.N) * float64(n)))
	}
	b.res.Fanout = append(b.res.Fanout, f)
	b.logf("N=%d %s: relay-pki %.3f s (first %.3f, p50 %.3f, p99 %.3f; runs %v), floor %.3f s (%d workers), kubectl loop %s", n, change, f.RelayPKIS, f.FirstS, f.P50S, f.P99S, f.RelayRunsS, f.FloorS, f.FloorWorkers, fmtOpt(f.KubectlLoopS))
	return nil
}

// relayOnce changes the token or the trust source in the management
// cluster only, and times its arrival in every cluster.
func (b *bench) relayOnce(ctx context.Context, n int, change string, ns []string) (lat []time.Duration, publish *float64, key string, value []byte, err error) {
	c := b.cfg
	start := time.Now()
	var target string
	switch change {
	case "token":
		target, key = c.IdentityToken.SecretName, c.IdentityToken.Key
		if err := rotate.Token(ctx, b.mgmt.Client, c, rand.Reader); err != nil {
			return nil, nil, "", nil, err
		}
		v, err := b.newToken(ctx, b.token)
		if err != nil {
			return nil, nil, "", nil, err
		}
		value, b.token = v, v
	case "trust":
		// A root is added next to the one that signed the server and
		// signing certificates, as when a new CA is staged: each change a
		// root never seen before.
		target, key = c.TrustBundle.SecretName, "ca.crt"
		added, err := newRoot(fmt.Sprintf("bench root %d-%d", n, time.Now().UnixNano()))
		if err != nil {
			return nil, nil, "", nil, err
		}
		if err := setTrustSource(ctx, b.mgmtCS, c.Namespace, append(slices.Clone(b.roots.rootA), added...)); err != nil {
			return nil, nil, "", nil, err
		}
		published, err := b.obs.waitNew(ctx, target, c.Namespace, b.trust, b.o.timeout)
		if err != nil {
			return nil, nil, "", nil, err
		}
		value, b.trust = published.value, published.value
		publish = ptr(secs(published.at.Sub(start)))
	}
	lat, err = b.obs.waitAll(ctx, target, ns, value, start, b.o.timeout)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("relay-pki %s fan-out to %d clusters: %w", change, n, err)
	}
	// The next change starts from a controller that has finished this one.
	if err := b.waitSynced(ctx, n); err != nil {
		return nil, nil, "", nil, err
	}
	return lat, publish, key, value, nil
}

func (b *bench) lastLoop(change string) *fanout {
	for i := len(b.res.Fanout) - 1; i >= 0; i-- {
		if f := b.res.Fanout[i]; f.Change == change && f.KubectlLoopS != nil {
			return &f
		}
	}
	return nil
}

func fmtOpt(v *float64) string {
	if v == nil {
		return "not run"
	}
	return fmt.Sprintf("%.3f s", *v)
}

func ptr[T any](v T) *T { return &v }

// snapshot scrapes every apiserver's request counters.
func (b *bench) snapshot(ctx context.Context) ([]requestCounts, error) {
	var out []requestCounts
	for _, cs := range append([]kubernetes.Interface{b.mgmtCS}, b.remoteCS...) {
		rc, err := scrapeAPIServer(ctx, cs)
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	return out, nil
}

// apiserverNames name the snapshot's entries, in order.
var apiserverNames = []string{"management", "remote-a", "remote-b"}

func writesBetween(before, after []requestCounts) (writes, leases float64, byVerb map[string]float64) {
	byVerb = map[string]float64{}
	for i := range after {
		w, l, v := after[i].writes(before[i])
		writes += w
		leases += l
		for k, x := range v {
			byVerb[apiserverNames[i]+": "+k] += x
		}
	}
	return writes, leases, byVerb
}

func (b *bench) steadyState(ctx context.Context) error {
	n := len(b.clusters)
	// The last fan-out's registration status writes are paced by the
	// management client's rate limit: the window starts once no write
	// has reached any apiserver for 5 s.
	quiet, err := b.waitQuiet(ctx, 5*time.Second, 3*time.Minute)
	if err != nil {
		return err
	}
	b.logf("steady state: N=%d, writes settled after %s; nothing changes for %s", n, quiet.Round(time.Second), b.o.steady)
	before, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	pid := b.controller.PID()
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.o.steady):
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	after, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	m, err := scrapeController(ctx, b.metricsAddr)
	if err != nil {
		return err
	}
	w, l, byVerb := writesBetween(before, after)
	b.res.Steady = &steady{
		N: n, Seconds: round(elapsed, 1), Writes: w, WritesByVerb: byVerb, LeaseWrites: l,
		CPUSeconds: round(cpu1-cpu0, 2), CPUCoreFraction: round((cpu1-cpu0)/elapsed, 4), Goroutines: m.goroutines,
	}
	b.logf("steady: %.0f writes %v, %.0f lease writes, CPU %.2f s, %.0f goroutines", w, byVerb, l, cpu1-cpu0, m.goroutines)
	return nil
}

// waitQuiet waits until no write other than Lease renewals has reached
// any apiserver for quiet, and returns how long that took.
func (b *bench) waitQuiet(ctx context.Context, quiet, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	last, err := b.snapshot(ctx)
	if err != nil {
		return 0, err
	}
	calm := time.Now()
	for time.Since(calm) < quiet {
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("writes did not stop within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
		now, err := b.snapshot(ctx)
		if err != nil {
			return 0, err
		}
		if w, _, _ := writesBetween(last, now); w > 0 {
			calm = time.Now()
		}
		last = now
	}
	return time.Since(start), nil
}

// eventUIDs is the set of Events in the relay and registration namespaces.
func (b *bench) eventUIDs(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, ns := range []string{b.cfg.Namespace, registrationNamespace} {
		list, err := b.mgmtCS.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, e := range list.Items {
			out[string(e.UID)] = fmt.Sprintf("%s %s/%s: %s", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
	}
	return out, nil
}

// newEvents names the Events that are not in before, so that any write a
// cold start makes is named.
func (b *bench) newEvents(ctx context.Context, before map[string]string) []string {
	after, err := b.eventUIDs(ctx)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for uid, e := range after {
		if _, ok := before[uid]; !ok {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

func (b *bench) coldStart(ctx context.Context) error {
	n := len(b.clusters)
	b.logf("cold start: restarting the controller over %d clusters in sync", n)
	if err := b.controller.Stop(); err != nil {
		return err
	}
	before, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	events, err := b.eventUIDs(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := b.controller.Start(); err != nil {
		return err
	}
	if err := b.waitSynced(ctx, n); err != nil {
		return err
	}
	took := time.Since(start)
	// Anything written because of the restart comes within moments.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
	}
	after, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	w, l, byVerb := writesBetween(before, after)
	b.res.Cold = &coldStart{N: n, Seconds: secs(took), Writes: w, WritesByVerb: byVerb, LeaseWrites: l, Events: b.newEvents(ctx, events)}
	b.logf("cold start: all %d verified after %s, %.0f writes %v, %.0f lease writes", n, took.Round(time.Millisecond), w, byVerb, l)
	return nil
}

// Command cert-manager-controller runs cert-manager's real controllers, built
// from the public packages of the cert-manager module, so that the e2e tests
// and the demo issue certificates exactly as a cluster's cert-manager does.
// It runs as its own process so tests can kill and restart it like a real
// deployment. Only the issuer types relay-pki uses are linked in: SelfSigned,
// CA and Vault (the ACME and Venafi controllers pull in dependencies the
// module proxy does not serve).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cert-manager/cert-manager/pkg/controller"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	// Each controller registers itself with controller.Known().
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/vault"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// Without the issuer backends the issuers controller loops on
	// "issuer 'ca' not registered".
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
)

func main() {
	klog.InitFlags(nil)
	// controller-runtime, linked in through cert-manager, registers a global
	// --kubeconfig; reuse it rather than defining a second one.
	kubeconfig := flag.Lookup("kubeconfig")
	var kubeconfigPath string
	if kubeconfig == nil {
		flag.StringVar(&kubeconfigPath, "kubeconfig", "", "kubeconfig file of the cluster to run against")
	}
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "kube-system", "namespace of the secrets ClusterIssuers reference")
	workers := flag.Int("workers", 5, "workers per controller")
	leaseNamespace := flag.String("leader-election-namespace", "kube-system", "namespace of the cert-manager-controller Lease, as upstream")
	flag.Parse()
	if kubeconfig != nil {
		kubeconfigPath = kubeconfig.Value.String()
	}
	if kubeconfigPath == "" {
		fmt.Fprintln(os.Stderr, "error: --kubeconfig is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Upstream holds the Lease kube-system/cert-manager-controller while it
	// runs; relay-pki install reads it to tell whether cert-manager's
	// controller is alive, so the test controller holds it too. Durations are
	// shorter than upstream's so a killed controller is replaced quickly.
	err := leaderElected(ctx, kubeconfigPath, *leaseNamespace, func(ctx context.Context) error {
		return run(ctx, kubeconfigPath, *clusterResourceNamespace, *workers)
	})
	if err != nil {
		klog.ErrorS(err, "cert-manager controller failed")
		os.Exit(1)
	}
}

func leaderElected(ctx context.Context, kubeconfig, namespace string, run func(context.Context) error) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	host, _ := os.Hostname()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: "cert-manager-controller"},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: fmt.Sprintf("%s_%d", host, os.Getpid())},
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true,
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				runErr = run(ctx)
				cancel() // a failed controller gives up the lease
			},
			OnStoppedLeading: func() {},
		},
	})
	return runErr
}

func run(ctx context.Context, kubeconfig, clusterResourceNamespace string, workers int) error {
	ctx = klog.NewContext(ctx, klog.Background())
	// Upstream's defaults (cmd/controller/app/options).
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: clusterResourceNamespace,
		},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes:                 []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return fmt.Errorf("build controller context: %w", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(controller.Known()))
	for name, construct := range controller.Known() {
		iface, err := construct(factory)
		if err != nil {
			return fmt.Errorf("construct controller %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			klog.InfoS("starting controller", "controller", name)
			if err := iface.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", name, err)
			}
		}()
	}

	// Informers are requested by the constructors above; start them after.
	built, err := factory.Build()
	if err != nil {
		return fmt.Errorf("build controller context: %w", err)
	}
	built.SharedInformerFactory.Start(ctx.Done())
	built.KubeSharedInformerFactory.Start(ctx.Done())
	built.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	klog.InfoS("cert-manager controllers running", "controllers", len(controller.Known()))

	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	wg.Wait()
	return nil
}

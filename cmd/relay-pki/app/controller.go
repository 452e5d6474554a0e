package app

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app/options"
	"github.com/relay-pki/relay-pki/internal/scheme"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

func newControllerCommand() *cobra.Command {
	var (
		cfg  options.Config
		kube options.Kube
		opts options.Controller
	)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Keep the relay PKI, the trust bundle and the identity token in every registered cluster",
		Long: `controller runs in the management cluster. It applies the relay PKI's cert-manager
objects, creates the identity token if there is none, publishes the verified trust
bundle as relay-root-tls-secret, and keeps ca.crt and the token, and nothing else,
in the target namespace of every cluster registered by a Secret labelled
relay-pki.io/cluster=<name> in --registration-namespace.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return err
			}
			c, err := cfg.Complete()
			if err != nil {
				return err
			}
			restCfg, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			restCfg.QPS, restCfg.Burst = opts.KubeAPIQPS, opts.KubeAPIBurst
			log := opts.Logger()
			ctrl.SetLogger(log)

			metrics, err := relaysync.NewMetrics(crmetrics.Registry)
			if err != nil {
				return fmt.Errorf("register metrics: %w", err)
			}
			syncOpts := relaysync.Options{
				Config: c, RegistrationNamespace: opts.RegistrationNamespace, ManageIssuers: opts.ManageIssuers,
				MaxConcurrentSyncs: opts.MaxConcurrentSyncs, ConnectTimeout: opts.ConnectTimeout, Metrics: metrics,
			}
			log.Info("starting", "namespace", c.Namespace, "registrationNamespace", opts.RegistrationNamespace, "issuerMode", c.Issuer.Mode(), "manageIssuers", opts.ManageIssuers)
			// A management apiserver that is away longer than the renew
			// deadline costs the leader its lease; the process campaigns
			// again instead of exiting, so an apiserver restart needs no
			// controller restart. State lives in the cluster, so a new
			// manager starts from it.
			campaigned, backoff := false, time.Second
			for {
				started, err := runManager(cmd.Context(), restCfg, log, opts, syncOpts)
				switch {
				case cmd.Context().Err() != nil:
					return nil
				case started && err != nil && err.Error() == "leader election lost":
					log.Info("lost leadership; campaigning again")
					campaigned, backoff = true, time.Second
				case !started && campaigned:
					// The apiserver that cost the lease may still be away.
					log.Info("cannot set up the controller yet; retrying", "error", err.Error(), "after", backoff)
					backoff = min(2*backoff, 30*time.Second)
				default:
					return err
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(backoff):
				}
			}
		},
	}
	cfg.AddFlags(cmd.Flags())
	kube.AddFlags(cmd.Flags())
	opts.AddFlags(cmd.Flags())
	return cmd
}

// runManager sets up a manager and runs it; started says whether it got as
// far as running.
func runManager(ctx context.Context, restCfg *rest.Config, log logr.Logger, opts options.Controller, syncOpts relaysync.Options) (started bool, err error) {
	graceful := 30 * time.Second
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme.New(),
		Logger:                        log,
		Cache:                         relaysync.CacheOptions(syncOpts),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddress},
		HealthProbeBindAddress:        opts.HealthAddress,
		PprofBindAddress:              opts.PprofAddress,
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              "relay-pki-controller",
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &graceful,
	})
	if err != nil {
		return false, fmt.Errorf("create manager: %w", err)
	}
	if err := relaysync.SetupWithManager(mgr, syncOpts); err != nil {
		return false, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return false, err
	}
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("caches not synced")
		}
		return nil
	}); err != nil {
		return false, err
	}
	return true, mgr.Start(ctx)
}

package app

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app/options"
	"github.com/relay-pki/relay-pki/install"
	"github.com/relay-pki/relay-pki/internal/scheme"
	"github.com/relay-pki/relay-pki/rotate"
)

func newInstallCommand() *cobra.Command {
	var (
		cfg            options.Config
		kube           options.Kube
		timeout        time.Duration
		leaseNamespace string
	)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Apply the relay PKI to the management cluster and wait until its certificates are Ready",
		Long: `install checks that cert-manager is installed and running, server-side applies the
relay namespace and the relay PKI's Issuers and Certificates, and waits until
cert-manager has issued every certificate, printing each change of state.
Running it again with the same configuration changes nothing.`,
		Example: `  relay-pki install
  relay-pki install --config relay-pki.yaml --context mgmt --timeout 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: must be positive", timeout)
			}
			c, err := cfg.Complete()
			if err != nil {
				return err
			}
			restCfg, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			cl, err := client.New(restCfg, client.Options{Scheme: scheme.New()})
			if err != nil {
				return fmt.Errorf("management cluster client: %w", err)
			}
			disc, err := discovery.NewDiscoveryClientForConfig(restCfg)
			if err != nil {
				return fmt.Errorf("management cluster discovery: %w", err)
			}
			out := cmd.OutOrStdout()
			ctx := cmd.Context()

			fmt.Fprintf(out, "Checking cert-manager in %s\n", restCfg.Host)
			warnings, err := install.Preflight(ctx, disc, cl, leaseNamespace, time.Now())
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			fmt.Fprintf(out, "Applying the relay PKI (issuer mode %s) in namespace %s\n", c.Issuer.Mode(), c.Namespace)
			roots, err := rotate.Roots(ctx, cl, c)
			if err != nil {
				return err
			}
			applied, err := install.Apply(ctx, cl, c, roots)
			for _, a := range applied {
				fmt.Fprintln(out, " ", a)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "Waiting for cert-manager to issue the certificates")
			w := &install.Waiter{Client: cl, Out: out, Terminal: isTerminal(out)}
			certs, err := w.Wait(ctx, c.Namespace, install.CertificateNames(c, roots), timeout)
			if err != nil {
				return err
			}
			fmt.Fprintln(out)
			if err := install.Summary(out, certs); err != nil {
				return err
			}
			changed := 0
			for _, a := range applied {
				if a.Result != install.Unchanged {
					changed++
				}
			}
			fmt.Fprintf(out, "\nrelay PKI ready: %d certificates Ready, %d of %d objects changed\n", len(certs), changed, len(applied))
			return nil
		},
	}
	cfg.AddFlags(cmd.Flags())
	kube.AddFlags(cmd.Flags())
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for every certificate to be Ready")
	cmd.Flags().StringVar(&leaseNamespace, "cert-manager-namespace", "kube-system", "namespace of cert-manager's leader Lease (its --leader-election-namespace), used to check that its controller runs")
	return cmd
}

// isTerminal: progress is drawn with a spinner on a terminal and written as
// plain lines anywhere else (CI logs, pipes).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

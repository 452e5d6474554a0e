package app

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app/options"
	"github.com/relay-pki/relay-pki/internal/scheme"
	"github.com/relay-pki/relay-pki/manifest"
	"github.com/relay-pki/relay-pki/register"
)

// dryRunToken stands in for the token a real registration requests.
const dryRunToken = "<requested from the workload cluster at registration>"

func defaultRegistrationNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "relay-pki-system"
}

func newRegisterCommand() *cobra.Command {
	var (
		cfg    options.Config
		kube   options.Kube
		remote = options.Kube{Remote: true}
		o      register.Options
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "register NAME --remote-context CONTEXT",
		Short: "Give relay-pki least-privilege access to a workload cluster and register it",
		Long: `register creates, in the workload cluster's target namespace, the ServiceAccount
relay-pki-sync and a Role that lets it read and write only relay-root-tls-secret and
relay-identity-token-secret (plus create Secrets, which Kubernetes cannot restrict by
name), requests a token for it, and writes the registration Secret NAME, holding a
kubeconfig with that token, into the management cluster. Running it again issues a
new token: that is how a registration's credentials are rotated.`,
		Example: `  relay-pki register workload-1 --remote-context workload-1
  relay-pki register workload-2 --remote-kubeconfig w2.yaml --remote-context admin --server https://10.0.0.12:6443
  relay-pki register workload-1 --remote-context workload-1 --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Cluster = args[0]
			c, err := cfg.Complete()
			if err != nil {
				return err
			}
			o.Config = c
			if err := o.Validate(); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if dryRun {
				kc, err := register.Kubeconfig(o.Cluster, serverOr(o.Server, "<server of --remote-context>"), nil, "", targetOr(o, c.Namespace), dryRunToken)
				if err != nil {
					return err
				}
				reg := register.RegistrationSecret(o, nil)
				reg.Data = nil
				reg.StringData = map[string]string{"kubeconfig": string(kc)}
				fmt.Fprintf(out, "# workload cluster (--remote-context %q)\n", remote.Context)
				if err := manifest.WriteYAML(out, register.RemoteObjects(o)); err != nil {
					return err
				}
				fmt.Fprintln(out, "---\n# management cluster")
				return manifest.WriteYAML(out, []client.Object{reg})
			}
			if remote.Context == "" {
				return fmt.Errorf("--remote-context is required: name the kubeconfig context of the workload cluster to register")
			}
			remoteCfg, err := remote.RESTConfig()
			if err != nil {
				return err
			}
			mgmtCfg, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			mgmt, err := client.New(mgmtCfg, client.Options{Scheme: scheme.New()})
			if err != nil {
				return fmt.Errorf("management cluster client: %w", err)
			}
			res, err := register.Register(cmd.Context(), mgmt, remoteCfg, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "registered %s: server %s, namespace %s, ServiceAccount %s (token expires %s)\n",
				o.Cluster, res.Server, res.TargetNamespace, register.ServiceAccountName, res.TokenExpires.UTC().Format(time.RFC3339))
			fmt.Fprintf(out, "registration Secret %s/%s written; the controller syncs the cluster now (relay-pki status shows it)\n", o.RegistrationNamespace, o.Cluster)
			return nil
		},
	}
	cfg.AddFlags(cmd.Flags())
	kube.AddFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&remote.Context, "remote-context", "", "kubeconfig context of the workload cluster (required)")
	fs.StringVar(&remote.Kubeconfig, "remote-kubeconfig", "", "kubeconfig holding --remote-context (default: the same as --kubeconfig's rules)")
	fs.StringVar(&o.RegistrationNamespace, "registration-namespace", defaultRegistrationNamespace(), "namespace of the registration Secrets in the management cluster (the controller's)")
	fs.StringVar(&o.TargetNamespace, "target-namespace", "", "namespace in the workload cluster that receives the secrets (default: the config's namespace)")
	fs.StringVar(&o.Server, "server", "", "workload apiserver URL as the controller reaches it (default: the server of --remote-context)")
	fs.DurationVar(&o.TokenTTL, "token-ttl", 365*24*time.Hour, "lifetime requested for the ServiceAccount token; register again before it ends (the apiserver may shorten it)")
	fs.BoolVar(&dryRun, "dry-run", false, "print the objects of both clusters and write nothing")
	return cmd
}

func newDeregisterCommand() *cobra.Command {
	var (
		cfg    options.Config
		kube   options.Kube
		remote = options.Kube{Remote: true}
		o      register.Options
	)
	cmd := &cobra.Command{
		Use:   "deregister NAME",
		Short: "Remove a workload cluster's registration (and, with --remote-context, its credentials)",
		Long: `deregister deletes the registration Secret NAME. The controller then keeps or removes
the copies in the workload cluster as sync.deletionPolicy says (Retain by default).
With --remote-context it also deletes the relay-pki-sync ServiceAccount, Role and
RoleBinding there, which revokes the registration's token at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Cluster = args[0]
			c, err := cfg.Complete()
			if err != nil {
				return err
			}
			o.Config = c
			o.TokenTTL = time.Hour
			if err := o.Validate(); err != nil {
				return err
			}
			mgmtCfg, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			mgmt, err := client.New(mgmtCfg, client.Options{Scheme: scheme.New()})
			if err != nil {
				return fmt.Errorf("management cluster client: %w", err)
			}
			var remoteCfg *rest.Config
			if remote.Context != "" {
				if remoteCfg, err = remote.RESTConfig(); err != nil {
					return err
				}
			}
			done, err := register.Deregister(cmd.Context(), mgmt, remoteCfg, o)
			for _, d := range done {
				fmt.Fprintln(cmd.OutOrStdout(), d)
			}
			if err == nil && len(done) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "cluster %s is not registered\n", o.Cluster)
			}
			return err
		},
	}
	cfg.AddFlags(cmd.Flags())
	kube.AddFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&remote.Context, "remote-context", "", "also remove relay-pki's ServiceAccount, Role and RoleBinding from this workload cluster context")
	fs.StringVar(&remote.Kubeconfig, "remote-kubeconfig", "", "kubeconfig holding --remote-context")
	fs.StringVar(&o.RegistrationNamespace, "registration-namespace", defaultRegistrationNamespace(), "namespace of the registration Secrets in the management cluster")
	fs.StringVar(&o.TargetNamespace, "target-namespace", "", "namespace in the workload cluster used at registration (default: the config's namespace)")
	return cmd
}

func serverOr(s, d string) string {
	if s != "" {
		return s
	}
	return d
}

func targetOr(o register.Options, d string) string {
	if o.TargetNamespace != "" {
		return o.TargetNamespace
	}
	return d
}

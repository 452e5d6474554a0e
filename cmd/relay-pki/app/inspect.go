package app

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app/options"
	"github.com/relay-pki/relay-pki/inspect"
	"github.com/relay-pki/relay-pki/internal/scheme"
)

// ExitError ends the program with Code after printing Message (if any) to
// stderr: status and verify report their verdict by exit code.
type ExitError struct {
	Code    int
	Message string
}

func (e *ExitError) Error() string { return e.Message }

// inspectFlags are shared by status and verify.
type inspectFlags struct {
	cfg     options.Config
	kube    options.Kube
	regNS   string
	timeout time.Duration
}

func (f *inspectFlags) add(fs *pflag.FlagSet) {
	f.cfg.AddFlags(fs)
	f.kube.AddFlags(fs)
	fs.StringVar(&f.regNS, "registration-namespace", defaultRegistrationNamespace(), "namespace of the registration Secrets in the management cluster")
	fs.DurationVar(&f.timeout, "cluster-timeout", 10*time.Second, "time allowed to read one workload cluster")
}

func (f *inspectFlags) snapshot(cmd *cobra.Command) (*inspect.Snapshot, error) {
	c, err := f.cfg.Complete()
	if err != nil {
		return nil, err
	}
	restCfg, err := f.kube.RESTConfig()
	if err != nil {
		return nil, err
	}
	cl, err := client.New(restCfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("management cluster client: %w", err)
	}
	return inspect.Take(cmd.Context(), cl, inspect.Options{Config: c, RegistrationNamespace: f.regNS, Timeout: f.timeout, Parallel: 16})
}

func newStatusCommand() *cobra.Command {
	var (
		f      inspectFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the relay certificates and every cluster's sync state; exit 0 only when all is healthy",
		Long: `status reads the relay PKI's Certificates and secrets in the management cluster and,
with each registration's own credentials, the two secrets in every workload cluster.
It compares live copies, not only the controller's annotations, so a tampered or
stale copy shows even while the controller is down. Exit code 0 means healthy,
1 unhealthy, anything else that status could not be read.`,
		Example: `  relay-pki status
  relay-pki status -o json | jq '.clusters[] | select(.caMatches | not)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" && output != "yaml" {
				return fmt.Errorf("--output %q: must be table, json or yaml", output)
			}
			s, err := f.snapshot(cmd)
			if err != nil {
				return &ExitError{Code: 2, Message: err.Error()}
			}
			st := inspect.StatusOf(s)
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(out, string(b))
			case "yaml":
				b, err := yaml.Marshal(st)
				if err != nil {
					return err
				}
				fmt.Fprint(out, string(b))
			default:
				if err := st.WriteTable(out); err != nil {
					return err
				}
			}
			if !st.Healthy {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func newVerifyCommand() *cobra.Command {
	var (
		f            inspectFlags
		t            inspect.Thresholds
		problemsOnly bool
		output       string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every relay secret in every cluster: chains, usages, SANs, copies, private keys, expiry",
		Long: `verify answers "are the relay server's and the agents' certificates compatible?". It
reads every secret of Gloo Mesh's relay prerequisites in the management cluster and in
each registered cluster and checks that the server and signing certificates chain to
the distributed root, have the usages the relay needs (serverAuth and clientAuth on
the server certificate, CA:TRUE and keyCertSign on the signing certificate), that the
server certificate covers the relay host, that every workload cluster holds exactly
the management bundle and token, that no private key is outside the management
cluster, and how many days each certificate has left. One line per finding; exit
code 1 on any ERROR.`,
		Example: `  relay-pki verify --relay-host relay.example.com
  relay-pki verify --warn-days 60 --error-days 14 --problems-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t.ErrorDays < 0 || t.WarnDays < t.ErrorDays {
				return fmt.Errorf("--warn-days %d and --error-days %d: need 0 <= error-days <= warn-days", t.WarnDays, t.ErrorDays)
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: must be text or json", output)
			}
			s, err := f.snapshot(cmd)
			if err != nil {
				return &ExitError{Code: 2, Message: err.Error()}
			}
			findings := inspect.Verify(s, t)
			if output == "json" {
				b, err := json.MarshalIndent(findings, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			} else {
				inspect.WriteFindings(cmd.OutOrStdout(), findings, problemsOnly)
			}
			if errs, _ := inspect.Errors(findings); errs > 0 {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	f.add(cmd.Flags())
	fs := cmd.Flags()
	fs.IntVar(&t.WarnDays, "warn-days", 30, "WARNING for a certificate with fewer days left")
	fs.IntVar(&t.ErrorDays, "error-days", 7, "ERROR for a certificate with fewer days left")
	fs.StringSliceVar(&t.RelayHosts, "relay-host", nil, "host name agents dial; the server certificate must cover it (repeatable)")
	fs.BoolVar(&problemsOnly, "problems-only", false, "print only WARNING and ERROR findings")
	fs.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// Package app builds relay-pki's command tree. Commands return errors; only
// main decides the exit code.
package app

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app/options"
	"github.com/relay-pki/relay-pki/internal/version"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/manifest"
)

// NewCommand returns the root command writing to the given streams.
func NewCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "relay-pki",
		Short: "cert-manager-based PKI and trust distribution for the Gloo Mesh relay",
		Long: `relay-pki replaces the openssl and kubectl script of Gloo Mesh Enterprise's
relay prerequisites with cert-manager: it renders the root, server and signing
certificates, and keeps relay-root-tls-secret and relay-identity-token-secret in
every workload cluster.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRenderCommand(), newInstallCommand(), newRegisterCommand(), newDeregisterCommand(), newStatusCommand(), newVerifyCommand(), newRotateCommand(), newControllerCommand(), newVersionCommand())
	return root
}

func newRenderCommand() *cobra.Command {
	var (
		cfg    options.Config
		output string
	)
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Print the relay PKI's cert-manager objects, ready for kubectl apply -f -",
		Example: `  relay-pki render | kubectl apply -f -
  relay-pki render --issuer-kind ClusterIssuer --issuer-name vault
  relay-pki render --config relay-pki.yaml --istio-ingress -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return fmt.Errorf("--output %q: must be yaml or json", output)
			}
			c, err := cfg.Complete()
			if err != nil {
				return err
			}
			objs := issuer.Build(c)
			if output == "json" {
				return manifest.WriteJSON(cmd.OutOrStdout(), objs)
			}
			return manifest.WriteYAML(cmd.OutOrStdout(), objs)
		},
	}
	cfg.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml (multi-document) or json (a v1 List)")
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of relay-pki",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.String())
		},
	}
}

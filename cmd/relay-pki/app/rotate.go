package app

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app/options"
	"github.com/relay-pki/relay-pki/internal/scheme"
	"github.com/relay-pki/relay-pki/rotate"
)

func newRotateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the root key (staged across every cluster) or the identity token",
		Long: `rotate root asks relay-pki controller for a staged root key rotation: a new root is
minted beside the current one, both are published to every cluster and read back,
only then do the server and signing certificates move to the new root, and after
rotation.gracePeriod the old root is dropped everywhere. See docs/rotation.md.`,
	}
	cmd.AddCommand(newRotateRootCommand(), newRotateAbortCommand(), newRotateTokenCommand())
	return cmd
}

type rotateFlags struct {
	cfg  options.Config
	kube options.Kube
}

func (f *rotateFlags) client() (client.Client, error) {
	restCfg, err := f.kube.RESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("management cluster client: %w", err)
	}
	return c, nil
}

func newRotateRootCommand() *cobra.Command {
	var (
		f       rotateFlags
		force   bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "root",
		Short: "Start a staged root key rotation",
		Example: `  relay-pki rotate root --wait
  relay-pki rotate root --force   # do not wait for unreachable clusters`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.cfg.Complete()
			if err != nil {
				return err
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			id, err := rotate.RequestRoot(cmd.Context(), cl, c, force, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "root rotation requested (%s); the controller stages it, relay-pki status shows where it stands\n", id)
			if !wait {
				return nil
			}
			if err := rotate.Wait(cmd.Context(), cl, c, id, out, timeout); err != nil {
				return err
			}
			fmt.Fprintln(out, "root rotation complete: every cluster trusts only the new root")
			return nil
		},
	}
	f.cfg.AddFlags(cmd.Flags())
	f.kube.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&force, "force", false, "do not wait for clusters that are unreachable at a confirmation stage (they are named in an Event)")
	cmd.Flags().BoolVar(&wait, "wait", false, "print each stage and return when the rotation is complete")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "with --wait: how long to wait (the rotation goes on after it)")
	return cmd
}

func newRotateAbortCommand() *cobra.Command {
	var f rotateFlags
	cmd := &cobra.Command{
		Use:   "abort",
		Short: "Abort a root rotation before signing has switched: the old roots are published again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.cfg.Complete()
			if err != nil {
				return err
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			if err := rotate.RequestAbort(cmd.Context(), cl, c, time.Now()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "abort requested; the controller publishes the old roots again and removes the new one")
			return nil
		},
	}
	f.cfg.AddFlags(cmd.Flags())
	f.kube.AddFlags(cmd.Flags())
	return cmd
}

func newRotateTokenCommand() *cobra.Command {
	var f rotateFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Replace the identity token with a new random one; the controller syncs it everywhere",
		Long: `token writes 32 new random bytes (base64url) into relay-identity-token-secret in the
management cluster; relay-pki controller copies it to every registered cluster.
Agents already registered hold client certificates and do not need the token again.
The token is never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.cfg.Complete()
			if err != nil {
				return err
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			if err := rotate.Token(cmd.Context(), cl, c, rand.Reader); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "identity token in %s/%s replaced; relay-pki status shows when every cluster holds it\n", c.Namespace, c.IdentityToken.SecretName)
			return nil
		},
	}
	f.cfg.AddFlags(cmd.Flags())
	f.kube.AddFlags(cmd.Flags())
	return cmd
}

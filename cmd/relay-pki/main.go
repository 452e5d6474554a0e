// relay-pki replaces Gloo Mesh Enterprise's manual relay certificate script
// with cert-manager objects and a controller that keeps the trust bundle and
// identity token in every workload cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/relay-pki/relay-pki/cmd/relay-pki/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.NewCommand(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	var exit *app.ExitError
	switch {
	case errors.As(err, &exit):
		if exit.Message != "" {
			fmt.Fprintln(os.Stderr, "error:", exit.Message)
		}
		os.Exit(exit.Code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

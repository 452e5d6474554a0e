//go:build e2e

// Package e2e proves relay-pki's behaviour on real parts: kube-apiserver and
// etcd processes, cert-manager's real controllers and webhook.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/relay-pki/relay-pki/e2e/framework"
)

var tools framework.Tools

func TestMain(m *testing.M) {
	var err error
	if tools, err = framework.ToolsFromEnv(); err != nil {
		// Failing, not skipping: `make test` must prove the e2e claims.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	framework.StopAllOnSignal()
	if dir := os.Getenv(holdEnv); dir != "" {
		holdControlPlane(dir)
	}
	code := m.Run()
	framework.StopAll()
	os.Exit(code)
}

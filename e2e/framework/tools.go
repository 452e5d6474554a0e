// Package framework runs the real parts relay-pki is tested on: named control
// planes (kube-apiserver and etcd processes through controller-runtime's
// envtest) and cert-manager's controllers as a separate process. The e2e tests
// and `make demo` share it. Nothing it starts may outlive the test or demo:
// every process gets a parent-death signal, and Stop, t.Cleanup and the
// signal handler of StopAllOnSignal tear everything down.
package framework

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Tools are the binaries and manifests `make tools` builds from the Go
// module proxy.
type Tools struct {
	KubeAPIServer         string
	Etcd                  string
	CertManagerController string
	// CertManagerCRDs is a folder of cert-manager's CRD manifests.
	CertManagerCRDs string
	// RelayPKI is the relay-pki binary under test (`make build`).
	RelayPKI string
	// Vault is HashiCorp Vault's server.
	Vault string
	// Kubectl is kubectl, for the benchmark's kubectl loop.
	Kubectl string
}

// The Makefile exports these; they name files in its version-keyed cache.
var toolEnv = map[string]func(*Tools) *string{
	"RELAY_PKI_KUBE_APISERVER":          func(t *Tools) *string { return &t.KubeAPIServer },
	"RELAY_PKI_ETCD":                    func(t *Tools) *string { return &t.Etcd },
	"RELAY_PKI_CERT_MANAGER_CONTROLLER": func(t *Tools) *string { return &t.CertManagerController },
	"RELAY_PKI_CERT_MANAGER_CRDS":       func(t *Tools) *string { return &t.CertManagerCRDs },
	"RELAY_PKI_BINARY":                  func(t *Tools) *string { return &t.RelayPKI },
	"RELAY_PKI_VAULT":                   func(t *Tools) *string { return &t.Vault },
	"RELAY_PKI_KUBECTL":                 func(t *Tools) *string { return &t.Kubectl },
}

// optionalTools may be absent, unset or named but not built: `make demo`
// builds no Vault and `make test` no kubectl, yet the Makefile names both.
// The Vault tests fail (not skip) without Vault; only the benchmark needs
// kubectl, and it fails without it.
var optionalTools = map[string]bool{"RELAY_PKI_VAULT": true, "RELAY_PKI_KUBECTL": true}

// ToolsFromEnv reads the tool paths from the environment and checks that
// each exists.
func ToolsFromEnv() (Tools, error) {
	var t Tools
	var missing []string
	for env, field := range toolEnv {
		v := os.Getenv(env)
		if v == "" && optionalTools[env] {
			continue
		}
		if v == "" {
			missing = append(missing, env+" is not set")
			continue
		}
		if _, err := os.Stat(v); err != nil {
			if optionalTools[env] && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			missing = append(missing, fmt.Sprintf("%s=%s: %v", env, v, err))
			continue
		}
		*field(&t) = v
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("e2e tools missing (run the tests through `make test`, which builds them with `make tools`): %s", strings.Join(missing, "; "))
	}
	return t, nil
}

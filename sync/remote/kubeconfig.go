package remote

import (
	"errors"
	"fmt"
	"net/url"
	"sort"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// MaxKubeconfigSize bounds a registration's kubeconfig; real ones are a few
// KiB.
const MaxKubeconfigSize = 1 << 20

// InvalidKubeconfigError is a registration kubeconfig relay-pki refuses to
// use. Retrying cannot help; the registration must change.
type InvalidKubeconfigError struct{ Reason string }

func (e *InvalidKubeconfigError) Error() string { return "invalid kubeconfig: " + e.Reason }

// IsInvalidKubeconfig reports whether err is, or wraps, an
// InvalidKubeconfigError.
func IsInvalidKubeconfig(err error) bool {
	var ik *InvalidKubeconfigError
	return errors.As(err, &ik)
}

func invalid(format string, args ...any) error {
	return &InvalidKubeconfigError{Reason: fmt.Sprintf(format, args...)}
}

// KubeconfigPolicy says what a registration kubeconfig may contain.
type KubeconfigPolicy struct {
	// AllowInsecure permits insecure-skip-tls-verify.
	AllowInsecure bool
}

// RESTConfig turns a registration kubeconfig into a client configuration,
// refusing anything that would make the controller run a program or read
// its own files: exec and auth-provider plugins run binaries, and file
// references (token-file, certificate-authority, client-certificate,
// client-key) would read, for example, the controller's service account
// token and send it to a server of the kubeconfig author's choosing. Only
// inline data is accepted.
func RESTConfig(data []byte, policy KubeconfigPolicy) (*rest.Config, error) {
	if len(data) > MaxKubeconfigSize {
		return nil, invalid("%d bytes, larger than the %d byte limit", len(data), MaxKubeconfigSize)
	}
	if len(data) == 0 {
		return nil, invalid("empty: the registration Secret needs a kubeconfig key")
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, invalid("does not parse: %v", err)
	}
	if err := checkKubeconfig(cfg, policy); err != nil {
		return nil, err
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, invalid("%v", err)
	}
	return rc, nil
}

func checkKubeconfig(cfg *clientcmdapi.Config, policy KubeconfigPolicy) error {
	if cfg.CurrentContext == "" {
		return invalid("no current-context")
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return invalid("current-context %q is not defined", cfg.CurrentContext)
	}
	for _, name := range sortedKeys(cfg.AuthInfos) {
		a := cfg.AuthInfos[name]
		switch {
		case a.Exec != nil:
			return invalid("user %q uses an exec plugin (%s), which would run a program on the controller; use a token or client certificate", name, a.Exec.Command)
		case a.AuthProvider != nil:
			return invalid("user %q uses the %q auth-provider plugin; use a token or client certificate", name, a.AuthProvider.Name)
		case a.TokenFile != "":
			return invalid("user %q reads tokenFile %q from the controller's disk; inline the token", name, a.TokenFile)
		case a.ClientCertificate != "":
			return invalid("user %q reads client-certificate %q from the controller's disk; use client-certificate-data", name, a.ClientCertificate)
		case a.ClientKey != "":
			return invalid("user %q reads client-key %q from the controller's disk; use client-key-data", name, a.ClientKey)
		}
	}
	for _, name := range sortedKeys(cfg.Clusters) {
		c := cfg.Clusters[name]
		switch {
		case c.CertificateAuthority != "":
			return invalid("cluster %q reads certificate-authority %q from the controller's disk; use certificate-authority-data", name, c.CertificateAuthority)
		case c.InsecureSkipTLSVerify && !policy.AllowInsecure:
			return invalid("cluster %q sets insecure-skip-tls-verify; give certificate-authority-data instead (or allow insecure kubeconfigs in the configuration)", name)
		}
		u, err := url.Parse(c.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return invalid("cluster %q server %q is not an https:// URL", name, c.Server)
		}
	}
	if _, ok := cfg.Clusters[ctx.Cluster]; !ok {
		return invalid("context %q names cluster %q, which is not defined", cfg.CurrentContext, ctx.Cluster)
	}
	if _, ok := cfg.AuthInfos[ctx.AuthInfo]; !ok {
		return invalid("context %q names user %q, which is not defined", cfg.CurrentContext, ctx.AuthInfo)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package sync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/sync/trust"
)

// VaultTrust finds the self-signed root behind a Vault PKI mount. What
// cert-manager writes into ca.crt for a Vault issuer is the issuing CA (an
// intermediate) or whatever Vault's chain ends with (cert-manager#2166,
// #6632); agents must trust the root, so relay-pki asks Vault itself, at its
// unauthenticated ca_chain endpoint, and keeps only the self-signed
// certificates of that chain.
type VaultTrust struct {
	Vault *config.VaultIssuer
	HTTP  *http.Client
}

// NewVaultTrust builds the one HTTP client the controller uses for Vault,
// trusting caBundle (or the system roots without it).
func NewVaultTrust(v *config.VaultIssuer) (*VaultTrust, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if v.CABundle != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(v.CABundle)) {
			return nil, fmt.Errorf("issuer.vault.caBundle holds no PEM certificate")
		}
		tlsConf.RootCAs = pool
	}
	return &VaultTrust{Vault: v, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}}, nil
}

// Roots returns the PEM of the self-signed roots of the chain of the mount
// that signs the server certificate.
func (t *VaultTrust) Roots(ctx context.Context) ([]byte, error) {
	mount := t.Vault.Mount()
	url := strings.TrimRight(t.Vault.Server, "/") + "/v1/" + mount + "/ca_chain"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if t.Vault.Namespace != "" {
		req.Header.Set("X-Vault-Namespace", t.Vault.Namespace)
	}
	resp, err := t.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read Vault's CA chain of mount %s: %w", mount, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, trust.MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read Vault's CA chain of mount %s: %w", mount, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read Vault's CA chain of mount %s: %s", mount, resp.Status)
	}
	certs, err := certinfo.ParsePEM(body)
	if err != nil {
		return nil, fmt.Errorf("Vault's CA chain of mount %s: %w", mount, err)
	}
	var roots []byte
	for _, c := range certs {
		if trust.SelfSigned(c) {
			roots = append(roots, certinfo.EncodePEM(c)...)
		}
	}
	if roots == nil {
		return nil, fmt.Errorf("Vault's CA chain of mount %s holds no self-signed root (was the intermediate set-signed without its root?): configure trustBundle.source with the root", mount)
	}
	return roots, nil
}

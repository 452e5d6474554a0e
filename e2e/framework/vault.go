package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Vault is a real Vault dev server (in memory, TLS on loopback), run as a
// process next to the control planes.
type Vault struct {
	*Process
	// Addr is https://127.0.0.1:PORT.
	Addr string
	// CAPEM verifies Vault's TLS certificate (-dev-tls generates it).
	CAPEM []byte
	// RootToken may do anything.
	RootToken string

	http *http.Client
}

// StartVault starts `vault server -dev -dev-tls` on a free loopback port and
// waits until it answers. Vault also binds PORT+1 (its cluster port), so
// both must be free.
func StartVault(dir string, tools Tools) (*Vault, error) {
	dir = filepath.Join(dir, "vault")
	certDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	v := &Vault{Addr: fmt.Sprintf("https://127.0.0.1:%d", port), RootToken: "relay-pki-e2e-root"}
	p, err := StartProcess("vault", dir, tools.Vault, []string{"HOME=" + dir, "VAULT_ADDR=" + v.Addr},
		"server", "-dev", "-dev-tls", "-dev-tls-cert-dir="+certDir,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-dev-root-token-id="+v.RootToken, "-dev-no-store-token")
	if err != nil {
		return nil, err
	}
	v.Process = p
	deadline := time.Now().Add(time.Minute)
	for {
		if v.CAPEM == nil {
			if b, err := os.ReadFile(filepath.Join(certDir, "vault-ca.pem")); err == nil && len(b) > 0 {
				v.CAPEM = b
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(b)
				v.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
			}
		}
		if v.http != nil {
			if _, err := v.Do(context.Background(), http.MethodGet, "sys/health", nil); err == nil {
				return v, nil
			}
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			log, _ := os.ReadFile(p.LogPath)
			return nil, fmt.Errorf("vault did not become healthy within a minute; log:\n%s", tailString(string(log), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// UnsealKey is the dev server's unseal key, as it printed it at start.
func (v *Vault) UnsealKey() (string, error) {
	b, err := os.ReadFile(v.LogPath)
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`Unseal Key: (\S+)`).FindSubmatch(b)
	if m == nil {
		return "", errors.New("no unseal key in the vault log")
	}
	return string(m[1]), nil
}

// Do calls Vault's HTTP API at /v1/<path> with the root token and returns
// the response's data object (or the whole response when it has none).
func (v *Vault) Do(ctx context.Context, method, path string, body any) (map[string]any, error) {
	return v.DoAs(ctx, v.RootToken, method, path, body)
}

// DoAs is Do with another token ("" for none).
func (v *Vault) DoAs(ctx context.Context, token, method, path string, body any) (map[string]any, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, v.Addr+"/v1/"+path, r)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("vault %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(raw)))
	}
	if len(raw) == 0 {
		return nil, nil
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		// Some endpoints (…/ca/pem) answer with PEM, not JSON.
		return map[string]any{"raw": string(raw)}, nil
	}
	if d, ok := out["data"].(map[string]any); ok {
		return d, nil
	}
	return out, nil
}

// Raw fetches an unauthenticated endpoint's body (such as pki/ca/pem).
func (v *Vault) Raw(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.Addr+"/v1/"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("vault GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
		_ = l.Close()
		if err == nil {
			_ = l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no two consecutive free loopback ports")
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

package remote

import (
	"strings"
	"testing"
)

func kubeconfig(cluster, user string) []byte {
	return []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
` + cluster + `
users:
- name: u
  user:
` + user + `
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
`)
}

const (
	goodCluster = "    server: https://10.0.0.1:6443\n    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJBREFOQmdrcWhraUc5dzBCQVFzRkFBT0NBUUVBCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
	goodUser    = "    token: abc.def"
)

func TestRESTConfigRefusesWhatWouldRunOrReadOnTheController(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		data    []byte
		policy  KubeconfigPolicy
		wantErr string
	}{
		"an inline token and CA are accepted": {data: kubeconfig(goodCluster, goodUser)},
		"an exec plugin is refused": {
			data:    kubeconfig(goodCluster, "    exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}"),
			wantErr: `user "u" uses an exec plugin (aws)`,
		},
		"an auth-provider plugin is refused": {
			data:    kubeconfig(goodCluster, "    auth-provider: {name: gcp}"),
			wantErr: `user "u" uses the "gcp" auth-provider plugin`,
		},
		"a token file is refused": {
			data:    kubeconfig(goodCluster, "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token"),
			wantErr: `reads tokenFile "/var/run/secrets/kubernetes.io/serviceaccount/token"`,
		},
		"a client key path is refused": {
			data:    kubeconfig(goodCluster, "    client-key: /etc/key.pem\n    client-certificate-data: AA=="),
			wantErr: `reads client-key "/etc/key.pem"`,
		},
		"a client certificate path is refused": {
			data:    kubeconfig(goodCluster, "    client-certificate: /etc/crt.pem"),
			wantErr: `reads client-certificate "/etc/crt.pem"`,
		},
		"a certificate-authority path is refused": {
			data:    kubeconfig("    server: https://10.0.0.1:6443\n    certificate-authority: /etc/ca.pem", goodUser),
			wantErr: `reads certificate-authority "/etc/ca.pem"`,
		},
		"insecure-skip-tls-verify is refused by default": {
			data:    kubeconfig("    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true", goodUser),
			wantErr: "sets insecure-skip-tls-verify",
		},
		"insecure-skip-tls-verify is accepted when allowed": {
			data:   kubeconfig("    server: https://10.0.0.1:6443\n    insecure-skip-tls-verify: true", goodUser),
			policy: KubeconfigPolicy{AllowInsecure: true},
		},
		"a plain http server is refused": {
			data:    kubeconfig("    server: http://10.0.0.1:8080", goodUser),
			wantErr: `server "http://10.0.0.1:8080" is not an https:// URL`,
		},
		"an empty kubeconfig is refused": {data: nil, wantErr: "empty"},
		"garbage is refused without echoing it": {
			data:    []byte("token: s3cr3t-value\n\t- ["),
			wantErr: "does not parse",
		},
		"an oversized kubeconfig is refused with its size": {
			data:    make([]byte, MaxKubeconfigSize+1),
			wantErr: "larger than the 1048576 byte limit",
		},
		"a 10 MiB kubeconfig is refused with its size": {
			data:    make([]byte, 10<<20),
			wantErr: "10485760 bytes, larger than the 1048576 byte limit",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := RESTConfig(tc.data, tc.policy)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Host != "https://10.0.0.1:6443" {
					t.Errorf("host = %q", cfg.Host)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if !IsInvalidKubeconfig(err) {
				t.Errorf("%T is not an InvalidKubeconfigError", err)
			}
			if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "abc.def") {
				t.Errorf("error echoes a credential: %v", err)
			}
		})
	}
}

func FuzzRESTConfig(f *testing.F) {
	f.Add(kubeconfig(goodCluster, goodUser))
	f.Add(kubeconfig(goodCluster, "    exec: {command: x}"))
	f.Add([]byte("apiVersion: v1\nkind: Config\ncurrent-context: missing\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := RESTConfig(data, KubeconfigPolicy{})
		if err != nil {
			if !IsInvalidKubeconfig(err) {
				t.Fatalf("%T is not an InvalidKubeconfigError: %v", err, err)
			}
			return
		}
		if cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.BearerTokenFile != "" || cfg.CAFile != "" || cfg.KeyFile != "" || cfg.CertFile != "" {
			t.Fatalf("accepted a kubeconfig that reads files or runs plugins: %+v", cfg)
		}
	})
}

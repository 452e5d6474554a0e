package framework

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToolsFromEnv(t *testing.T) {
	dir := t.TempDir()
	built := filepath.Join(dir, "built")
	if err := os.WriteFile(built, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	notBuilt := filepath.Join(dir, "not-built")
	required := []string{"RELAY_PKI_KUBE_APISERVER", "RELAY_PKI_ETCD", "RELAY_PKI_CERT_MANAGER_CONTROLLER", "RELAY_PKI_CERT_MANAGER_CRDS", "RELAY_PKI_BINARY"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, tools Tools)
	}{
		{
			name: "optional tools named by the Makefile but not built are absent, not an error",
			env:  map[string]string{"RELAY_PKI_VAULT": notBuilt, "RELAY_PKI_KUBECTL": notBuilt},
			check: func(t *testing.T, tools Tools) {
				if tools.Vault != "" || tools.Kubectl != "" {
					t.Errorf("Vault %q, Kubectl %q; want both empty", tools.Vault, tools.Kubectl)
				}
			},
		},
		{
			name: "built optional tools are used",
			env:  map[string]string{"RELAY_PKI_VAULT": built, "RELAY_PKI_KUBECTL": built},
			check: func(t *testing.T, tools Tools) {
				if tools.Vault != built || tools.Kubectl != built {
					t.Errorf("Vault %q, Kubectl %q; want both %q", tools.Vault, tools.Kubectl, built)
				}
			},
		},
		{
			name:    "a required tool that is not built is an error naming it",
			env:     map[string]string{"RELAY_PKI_ETCD": notBuilt},
			wantErr: "RELAY_PKI_ETCD=" + notBuilt,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range append(required, "RELAY_PKI_VAULT", "RELAY_PKI_KUBECTL") {
				t.Setenv(e, "")
			}
			for _, e := range required {
				t.Setenv(e, built)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tools, err := ToolsFromEnv()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, tools)
		})
	}
}

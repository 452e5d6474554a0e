package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the command tree as main would and returns stdout, stderr
// and the error main would print.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCommand(strings.NewReader(""), &out, &errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay-pki.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: relay-pki.io/v1alpha1\nkind: Config\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRender(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		args      []string
		wantKinds []string
		wantIn    []string
		wantNotIn []string
	}{
		"the defaults render the five objects of the self-signed PKI": {
			args:      []string{"render"},
			wantKinds: []string{"Issuer", "Certificate", "Issuer", "Certificate", "Certificate"},
			wantIn:    []string{"selfSigned: {}", "rotationPolicy: Never", "size: 4096", "secretName: relay-root-ca", "secretName: relay-server-tls-secret", "secretName: relay-tls-signing-secret", "namespace: gloo-mesh"},
		},
		"a ClusterIssuer replaces the self-signed root": {
			args:      []string{"render", "--issuer-kind", "ClusterIssuer", "--issuer-name", "vault"},
			wantKinds: []string{"Certificate", "Certificate"},
			wantIn:    []string{"kind: ClusterIssuer\n    name: vault"},
			wantNotIn: []string{"selfSigned", "relay-root-ca"},
		},
		"--istio-ingress adds the passthrough Gateway and VirtualService": {
			args:      []string{"render", "--istio-ingress"},
			wantKinds: []string{"Issuer", "Certificate", "Issuer", "Certificate", "Certificate", "Gateway", "VirtualService"},
			wantIn:    []string{"mode: PASSTHROUGH", "number: 443", "number: 9900"},
		},
		"--namespace moves every object": {
			args:      []string{"render", "-n", "relay"},
			wantKinds: []string{"Issuer", "Certificate", "Issuer", "Certificate", "Certificate"},
			wantIn:    []string{"namespace: relay"},
			wantNotIn: []string{"namespace: gloo-mesh"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, line := range strings.Split(out, "\n") {
				if k, ok := strings.CutPrefix(line, "kind: "); ok {
					kinds = append(kinds, k)
				}
			}
			if strings.Join(kinds, ",") != strings.Join(tc.wantKinds, ",") {
				t.Errorf("kinds = %v, want %v", kinds, tc.wantKinds)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q", s)
				}
			}
			for _, s := range tc.wantNotIn {
				if strings.Contains(out, s) {
					t.Errorf("output has %q", s)
				}
			}
		})
	}
}

func TestRenderJSONIsAList(t *testing.T) {
	t.Parallel()
	out, err := run(t, "render", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string           `json:"kind"`
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "List" || len(list.Items) != 5 {
		t.Errorf("got kind %q with %d items, want a List of 5", list.Kind, len(list.Items))
	}
}

func TestRenderRefusesBadInput(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		args    func(t *testing.T) []string
		wantErr []string
	}{
		"an unknown field is named": {
			args: func(t *testing.T) []string {
				return []string{"render", "--config", writeConfig(t, "bogusField: true\n")}
			},
			wantErr: []string{`unknown field "bogusField"`, "relay-pki.yaml"},
		},
		"an invalid duration is refused with its field path": {
			args: func(t *testing.T) []string {
				return []string{"render", "--config", writeConfig(t, "server:\n  duration: 5m\n")}
			},
			wantErr: []string{`server.duration: Invalid value: "5m0s": must be at least 1h`},
		},
		"RSA 1024 is refused with its field path": {
			args: func(t *testing.T) []string {
				return []string{"render", "--config", writeConfig(t, "root:\n  privateKey: {algorithm: RSA, size: 1024}\n")}
			},
			wantErr: []string{"root.privateKey.size: Invalid value: 1024: supported RSA sizes: [2048 3072 4096]"},
		},
		"a missing file is named": {
			args:    func(t *testing.T) []string { return []string{"render", "--config", "/nonexistent/relay.yaml"} },
			wantErr: []string{`read configuration "/nonexistent/relay.yaml"`, "no such file"},
		},
		"--issuer-kind without --issuer-name is refused": {
			args:    func(*testing.T) []string { return []string{"render", "--issuer-kind", "ClusterIssuer"} },
			wantErr: []string{"--issuer-kind and --issuer-group need --issuer-name"},
		},
		"an unknown output format is refused": {
			args:    func(*testing.T) []string { return []string{"render", "-o", "xml"} },
			wantErr: []string{`--output "xml": must be yaml or json`},
		},
		"an unknown flag is refused": {
			args:    func(*testing.T) []string { return []string{"render", "--bogus"} },
			wantErr: []string{"unknown flag: --bogus"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := run(t, tc.args(t)...)
			if err == nil {
				t.Fatalf("no error; printed:\n%s", out)
			}
			if out != "" {
				t.Errorf("printed objects despite the error:\n%s", out)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "relay-pki dev") {
		t.Errorf("version printed %q, %v", out, err)
	}
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{"bash": "# bash completion V2 for relay-pki", "zsh": "#compdef relay-pki"} {
		out, err := run(t, "completion", shell)
		if err != nil {
			t.Fatalf("completion %s: %v", shell, err)
		}
		if !strings.HasPrefix(out, want) {
			t.Errorf("completion %s starts with %q, want %q", shell, out[:min(len(out), 40)], want)
		}
	}
	// The scripts ask the binary itself for candidates.
	out, err := run(t, "__complete", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"install", "register", "deregister", "status", "verify", "controller", "render"} {
		if !strings.Contains(out, "\n"+cmd+"\t") && !strings.HasPrefix(out, cmd+"\t") {
			t.Errorf("completion candidates lack %s:\n%s", cmd, out)
		}
	}
}

func TestOperatorCommandsRefuseBadFlagsBeforeConnecting(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"status with an unknown output format":     {[]string{"status", "-o", "xml"}, `--output "xml": must be table, json or yaml`},
		"verify with thresholds the wrong way":     {[]string{"verify", "--warn-days", "3", "--error-days", "7"}, "--warn-days 3 and --error-days 7"},
		"install with a zero timeout":              {[]string{"install", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		"register without a cluster name":          {[]string{"register"}, "accepts 1 arg(s), received 0"},
		"register without --remote-context":        {[]string{"register", "w1"}, "--remote-context is required"},
		"register with a name that is no DNS name": {[]string{"register", "W_1", "--remote-context", "x"}, `cluster name "W_1"`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

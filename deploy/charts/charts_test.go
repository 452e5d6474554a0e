package charts

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/relay-pki/relay-pki/config"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

var release = Release{Name: "relay-pki", Namespace: "relay-pki-system"}

func render(t *testing.T, values string) []*unstructured.Unstructured {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(release, v)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func TestChartRendersAsTheGoldenFiles(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"default":                              "",
		"service-monitor-and-gitops-issuers":   "metrics: {serviceMonitor: {enabled: true, labels: {release: prom}}}\nmanageIssuers: false\n",
		"clusterissuer-and-configmap-trust":    "config:\n  namespace: relay\n  issuer: {issuerRef: {name: vault, kind: ClusterIssuer}}\n  trustBundle: {source: {configMapRef: {name: corp-roots, key: ca.crt}}}\n",
		"pinned-digest-single-replica-json-v2": "image: {digest: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'}\nreplicaCount: 1\nlogLevel: 2\n",
	}
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			for _, o := range render(t, values) {
				out, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				b.WriteString("---\n")
				b.Write(out)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./deploy/charts -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("chart output differs from %s (-want +got); if intended, run go test ./deploy/charts -update:\n%s", golden, diff)
			}
		})
	}
}

func TestChartCreatesNothingClusterScoped(t *testing.T) {
	t.Parallel()
	for name, values := range map[string]string{
		"with the defaults":             "",
		"with a ClusterIssuer":          "config: {issuer: {issuerRef: {name: vault, kind: ClusterIssuer}}}",
		"with issuers left to GitOps":   "manageIssuers: false",
		"with a ConfigMap trust source": "config: {issuer: {issuerRef: {name: corp}}, trustBundle: {source: {configMapRef: {name: roots, key: ca.crt}}}}",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, o := range render(t, values) {
				if o.GetNamespace() == "" {
					t.Errorf("%s %s is cluster-scoped", o.GetKind(), o.GetName())
				}
				if strings.HasPrefix(o.GetKind(), "Cluster") {
					t.Errorf("the chart renders a %s", o.GetKind())
				}
			}
		})
	}
}

// rules returns "group/resource: verbs" for every rule of the Role.
func rules(t *testing.T, role *unstructured.Unstructured) map[string]string {
	t.Helper()
	if role == nil {
		t.Fatal("role not rendered")
	}
	out := map[string]string{}
	rs, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, r := range rs {
		m := r.(map[string]any)
		verbs := strings.Join(toStrings(m["verbs"]), ",")
		for _, g := range toStrings(m["apiGroups"]) {
			for _, res := range toStrings(m["resources"]) {
				out[g+"/"+res] = verbs
			}
		}
	}
	return out
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	sort.Strings(out)
	return out
}

func TestRBACGrantsOnlyWhatTheControllerUses(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		values    string
		relayNS   string
		wantRelay map[string]string
	}{
		"by default: the relay secrets, the rotation state, the cert-manager objects it applies, events": {
			relayNS: "gloo-mesh",
			wantRelay: map[string]string{
				"/secrets":                            "create,delete,get,list,patch,update,watch",
				"/configmaps":                         "create,get,list,patch,update,watch",
				"cert-manager.io/certificates":        "create,delete,get,list,patch,update,watch",
				"cert-manager.io/issuers":             "create,delete,get,list,patch,update,watch",
				"cert-manager.io/certificates/status": "patch,update",
				"cert-manager.io/certificaterequests": "delete,list",
				"/events":                             "create,patch",
				"events.k8s.io/events":                "create,patch",
			},
		},
		"with manageIssuers false: no access to cert-manager's objects": {
			values:  "manageIssuers: false",
			relayNS: "gloo-mesh",
			wantRelay: map[string]string{
				"/secrets": "create,delete,get,list,patch,update,watch", "/configmaps": "create,get,list,patch,update,watch",
				"/events": "create,patch", "events.k8s.io/events": "create,patch",
			},
		},
		"with another relay namespace: the same rules there": {
			values:  "config: {namespace: relay, issuer: {issuerRef: {name: corp}}, trustBundle: {source: {configMapRef: {name: roots, key: ca.crt}}}}",
			relayNS: "relay",
			wantRelay: map[string]string{
				"/secrets":                            "create,delete,get,list,patch,update,watch",
				"/configmaps":                         "create,get,list,patch,update,watch",
				"cert-manager.io/certificates":        "create,delete,get,list,patch,update,watch",
				"cert-manager.io/issuers":             "create,delete,get,list,patch,update,watch",
				"cert-manager.io/certificates/status": "patch,update",
				"cert-manager.io/certificaterequests": "delete,list",
				"/events":                             "create,patch",
				"events.k8s.io/events":                "create,patch",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs := render(t, tc.values)
			relay := find(objs, "Role", "relay-pki-relay")
			if relay.GetNamespace() != tc.relayNS {
				t.Errorf("relay Role in %q, want %q", relay.GetNamespace(), tc.relayNS)
			}
			if diff := cmp.Diff(tc.wantRelay, rules(t, relay)); diff != "" {
				t.Errorf("relay namespace rules (-want +got):\n%s", diff)
			}
			own := find(objs, "Role", "relay-pki")
			if own.GetNamespace() != release.Namespace {
				t.Errorf("registration Role in %q, want the release namespace", own.GetNamespace())
			}
			wantOwn := map[string]string{
				"/secrets": "get,list,patch,update,watch", "coordination.k8s.io/leases": "create,get,update",
				"/events": "create,patch", "events.k8s.io/events": "create,patch",
			}
			if diff := cmp.Diff(wantOwn, rules(t, own)); diff != "" {
				t.Errorf("release namespace rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeploymentRunsHardenedWithLeaderElection(t *testing.T) {
	t.Parallel()
	d := find(render(t, ""), "Deployment", "")
	if r, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("replicas = %v, want 2", r)
	}
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	if nonRoot, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !nonRoot {
		t.Error("pod may run as root")
	}
	containers, _, _ := unstructured.NestedSlice(pod, "containers")
	c := containers[0].(map[string]any)
	for path, want := range map[string]any{
		"securityContext.readOnlyRootFilesystem":   true,
		"securityContext.allowPrivilegeEscalation": false,
		"livenessProbe.httpGet.path":               "/healthz",
		"readinessProbe.httpGet.path":              "/readyz",
		"resources.limits.memory":                  "256Mi",
	} {
		got, _, _ := unstructured.NestedFieldNoCopy(c, strings.Split(path, ".")...)
		if got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--leader-elect=true", "--registration-namespace=$(POD_NAMESPACE)", "--config=/etc/relay-pki/relay-pki.yaml"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
}

func TestConfigMapHoldsAValidConfigurationFromValues(t *testing.T) {
	t.Parallel()
	objs := render(t, "config: {namespace: relay, dnsNames: [relay.example.com], sync: {deletionPolicy: Delete}}")
	cm := find(objs, "ConfigMap", "")
	data, _, _ := unstructured.NestedString(cm.Object, "data", "relay-pki.yaml")
	c, err := config.Decode([]byte(data))
	if err != nil {
		t.Fatalf("the chart's configuration does not decode: %v\n%s", err, data)
	}
	if err := config.Complete(c); err != nil {
		t.Fatalf("the chart's configuration is invalid: %v", err)
	}
	if c.Namespace != "relay" || c.Sync.DeletionPolicy != config.DeletionPolicyDelete || len(c.DNSNames) != 1 {
		t.Errorf("values were not carried into the configuration: %+v", c)
	}
}

func TestChartRefusesAServiceMonitorWithoutItsService(t *testing.T) {
	t.Parallel()
	_, err := Objects(release, map[string]any{"metrics": map[string]any{"service": map[string]any{"enabled": false}, "serviceMonitor": map[string]any{"enabled": true}}})
	if err == nil || !strings.Contains(err.Error(), "metrics.serviceMonitor.enabled needs metrics.service.enabled") {
		t.Errorf("err = %v, want the ServiceMonitor/Service message", err)
	}
}

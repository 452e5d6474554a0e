package register

import (
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/relay-pki/relay-pki/config"
	relaysync "github.com/relay-pki/relay-pki/sync"
	"github.com/relay-pki/relay-pki/sync/remote"
)

func options(mod func(*Options)) Options {
	o := Options{Cluster: "workload-1", Config: config.Default(), RegistrationNamespace: "relay-pki-system", TokenTTL: 24 * time.Hour}
	if mod != nil {
		mod(&o)
	}
	return o
}

func role(t *testing.T, o Options) *rbacv1.Role {
	t.Helper()
	for _, obj := range RemoteObjects(o) {
		if r, ok := obj.(*rbacv1.Role); ok {
			return r
		}
	}
	t.Fatal("no Role")
	return nil
}

func TestRoleAllowsOnlyTheTwoSecrets(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		mod       func(*Options)
		wantNS    string
		wantVerbs string
	}{
		"with deletionPolicy Retain the copies cannot be deleted": {
			wantNS: "gloo-mesh", wantVerbs: "get,list,watch,update,patch",
		},
		"with deletionPolicy Delete they can": {
			mod:    func(o *Options) { o.Config.Sync.DeletionPolicy = config.DeletionPolicyDelete },
			wantNS: "gloo-mesh", wantVerbs: "get,list,watch,update,patch,delete",
		},
		"a target namespace moves every object": {
			mod:    func(o *Options) { o.TargetNamespace = "relay" },
			wantNS: "relay", wantVerbs: "get,list,watch,update,patch",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := options(func(o *Options) {
				o.Config = config.Default()
				if tc.mod != nil {
					tc.mod(o)
				}
			})
			for _, obj := range RemoteObjects(o) {
				ns := obj.GetNamespace()
				if obj.GetObjectKind().GroupVersionKind().Kind == "Namespace" {
					ns = obj.GetName()
				}
				if ns != tc.wantNS {
					t.Errorf("%T in namespace %q, want %q", obj, ns, tc.wantNS)
				}
			}
			r := role(t, o)
			if len(r.Rules) != 2 {
				t.Fatalf("rules = %+v, want 2", r.Rules)
			}
			named, create := r.Rules[0], r.Rules[1]
			if got := strings.Join(named.ResourceNames, ","); got != "relay-root-tls-secret,relay-identity-token-secret" {
				t.Errorf("resourceNames = %s", got)
			}
			if got := strings.Join(named.Verbs, ","); got != tc.wantVerbs {
				t.Errorf("verbs on the two secrets = %s, want %s", got, tc.wantVerbs)
			}
			if strings.Join(create.Verbs, ",") != "create" || len(create.ResourceNames) != 0 || strings.Join(create.Resources, ",") != "secrets" {
				t.Errorf("second rule = %+v, want create on secrets only", create)
			}
		})
	}
}

func TestKubeconfigIsAcceptedByTheController(t *testing.T) {
	t.Parallel()
	kc, err := Kubeconfig("workload-1", "https://10.0.0.1:6443", []byte("-----BEGIN CERTIFICATE-----\n"), "", "gloo-mesh", "sa-token")
	if err != nil {
		t.Fatal(err)
	}
	// The controller's strict parser: no exec, no files, no insecure TLS.
	rc, err := remote.RESTConfig(kc, remote.KubeconfigPolicy{})
	if err != nil {
		t.Fatalf("the controller refuses the registration's kubeconfig: %v", err)
	}
	if rc.BearerToken != "sa-token" || rc.Host != "https://10.0.0.1:6443" {
		t.Errorf("rest config = host %q, token set %t", rc.Host, rc.BearerToken != "")
	}
	loaded, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	if ns := loaded.Contexts[loaded.CurrentContext].Namespace; ns != "gloo-mesh" {
		t.Errorf("context namespace = %q", ns)
	}
}

func TestRegistrationSecretIsLabelledAndAnnotatedForTheController(t *testing.T) {
	t.Parallel()
	s := RegistrationSecret(options(func(o *Options) { o.TargetNamespace = "relay" }), []byte("kc"))
	if s.Labels[relaysync.ClusterLabel] != "workload-1" || s.Namespace != "relay-pki-system" || s.Name != "workload-1" {
		t.Errorf("registration = %s/%s labels %v", s.Namespace, s.Name, s.Labels)
	}
	if s.Annotations[relaysync.NamespaceAnnotation] != "relay" {
		t.Errorf("annotations = %v, want the target namespace", s.Annotations)
	}
	if string(s.Data[relaysync.KubeconfigKey]) != "kc" {
		t.Error("kubeconfig not stored under its key")
	}
	if d := RegistrationSecret(options(nil), nil); d.Annotations != nil {
		t.Errorf("the default namespace needs no annotation: %v", d.Annotations)
	}
}

func TestOptionsNameTheBadValue(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		mod  func(*Options)
		want string
	}{
		"a cluster name that cannot name a Secret":       {func(o *Options) { o.Cluster = "Workload_1" }, `cluster name "Workload_1"`},
		"a bad registration namespace":                   {func(o *Options) { o.RegistrationNamespace = "-x" }, `--registration-namespace "-x"`},
		"a bad target namespace":                         {func(o *Options) { o.TargetNamespace = "A" }, `--target-namespace "A"`},
		"a token lifetime under the apiserver's minimum": {func(o *Options) { o.TokenTTL = time.Minute }, "--token-ttl 1m0s: must be at least 10m"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := options(tc.mod)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

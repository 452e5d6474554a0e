package install

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/scheme"
	"github.com/relay-pki/relay-pki/issuer"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func servedDiscovery(resources ...string) *fakediscovery.FakeDiscovery {
	d := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	if resources != nil {
		list := &metav1.APIResourceList{GroupVersion: "cert-manager.io/v1"}
		for _, r := range resources {
			list.APIResources = append(list.APIResources, metav1.APIResource{Name: r})
		}
		d.Resources = []*metav1.APIResourceList{list}
	}
	return d
}

func lease(renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: CertManagerLease},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}, LeaseDurationSeconds: ptr.To[int32](60)},
	}
}

func TestPreflight(t *testing.T) {
	t.Parallel()
	all := []string{"certificates", "certificaterequests", "issuers", "clusterissuers"}
	tests := map[string]struct {
		disc    *fakediscovery.FakeDiscovery
		objs    []runtime.Object
		wantErr string
		// notInstalled: the error must also say how to install cert-manager.
		notInstalled bool
	}{
		"cert-manager served and its controller renewing its lease passes": {
			disc: servedDiscovery(all...), objs: []runtime.Object{lease(now.Add(-10 * time.Second))},
		},
		"no cert-manager API names cert-manager and its CRDs and how to install it": {
			disc:         servedDiscovery(),
			wantErr:      "cert-manager is not installed in this cluster: the API cert-manager.io/v1 (CRDs certificates.cert-manager.io",
			notInstalled: true,
		},
		"a missing CRD is named": {
			disc:         servedDiscovery("certificates", "issuers", "clusterissuers"),
			wantErr:      "the CRD certificaterequests.cert-manager.io is missing",
			notInstalled: true,
		},
		"no lease means no controller": {
			disc:         servedDiscovery(all...),
			wantErr:      "cert-manager's controller is not running: its Lease kube-system/cert-manager-controller does not exist",
			notInstalled: true,
		},
		"a stale lease means the controller stopped": {
			disc: servedDiscovery(all...), objs: []runtime.Object{lease(now.Add(-10 * time.Minute))},
			wantErr: "was last renewed 10m0s ago",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := fake.NewClientBuilder().WithScheme(scheme.New()).WithRuntimeObjects(tc.objs...).Build()
			_, err := Preflight(t.Context(), tc.disc, c, "kube-system", now)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			case tc.notInstalled && !strings.Contains(err.Error(), "cert-manager.io/docs/installation"):
				t.Errorf("err %q does not say how to install cert-manager", err)
			}
		})
	}
}

func TestCertificateNamesFollowTheIssuerMode(t *testing.T) {
	t.Parallel()
	self := config.Default()
	ref := config.Default()
	ref.Issuer = config.Issuer{IssuerRef: &config.IssuerRef{Name: "vault", Kind: "ClusterIssuer"}}
	if err := config.Complete(ref); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  *config.Config
		want string
	}{
		"self-signed: root, server, signing": {self, "relay-root relay-server-tls relay-tls-signing"},
		"issuerRef: server and signing only": {ref, "relay-server-tls relay-tls-signing"},
	} {
		if got := strings.Join(CertificateNames(tc.cfg, issuer.SteadyRoots(0)), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", name, got, tc.want)
		}
	}
}

func TestAppliedReadsAsKubectlPrintsIt(t *testing.T) {
	t.Parallel()
	for want, a := range map[string]Applied{
		"namespace gloo-mesh created":                {Kind: "Namespace", Name: "gloo-mesh", Result: Created},
		"certificate gloo-mesh/relay-root unchanged": {Kind: "Certificate", Namespace: "gloo-mesh", Name: "relay-root", Result: Unchanged},
	} {
		if got := a.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

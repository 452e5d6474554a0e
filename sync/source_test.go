package sync

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/scheme"
	"github.com/relay-pki/relay-pki/internal/testpki"
)

func secret(ns, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func TestSourceReconciler(t *testing.T) {
	t.Parallel()
	root := testpki.MustIssue(t, "relay-root", true, nil, testpki.Options{})
	other := testpki.MustIssue(t, "other-root", true, nil, testpki.Options{})
	server := testpki.MustIssue(t, "server", false, root, testpki.Options{})
	signing := testpki.MustIssue(t, "signing", true, root, testpki.Options{})
	cfg := config.Default()
	ns := cfg.Namespace
	issued := []client.Object{
		secret(ns, cfg.Root.SecretName, map[string][]byte{"tls.crt": root.PEM}),
		secret(ns, cfg.Server.SecretName, map[string][]byte{"tls.crt": server.PEM, "ca.crt": root.PEM}),
		secret(ns, cfg.Signing.SecretName, map[string][]byte{"tls.crt": signing.PEM, "ca.crt": root.PEM}),
	}
	goodBundle := map[string][]byte{"ca.crt": root.PEM}
	published := secret(ns, cfg.TrustBundle.SecretName, goodBundle)
	published.Labels = managedLabels(RoleTrust)
	published.Annotations = map[string]string{ContentHashAnnotation: contentHash(goodBundle)}

	tests := map[string]struct {
		objs      []client.Object
		wantTrust []byte // nil: no trust secret
		wantToken func(t *testing.T, token []byte)
		wantEvent string
	}{
		"a new cluster gets a 32-byte token and the verified root": {
			objs:      issued,
			wantTrust: root.PEM,
			wantToken: func(t *testing.T, token []byte) {
				if len(token) != 43 || bytes.ContainsAny(token, "+/=") {
					t.Errorf("token %d characters, want 43 base64url characters", len(token))
				}
			},
			wantEvent: "TokenCreated",
		},
		"a user-provided token is kept": {
			objs:      append([]client.Object{secret(ns, cfg.IdentityToken.SecretName, map[string][]byte{"token": []byte("users-own")})}, issued...),
			wantTrust: root.PEM,
			wantToken: func(t *testing.T, token []byte) {
				if string(token) != "users-own" {
					t.Errorf("token replaced")
				}
			},
		},
		"a root that does not sign the server certificate is not published and the last good bundle stays": {
			objs: []client.Object{
				published,
				secret(ns, cfg.Root.SecretName, map[string][]byte{"tls.crt": other.PEM}),
				issued[1], issued[2],
			},
			wantTrust: root.PEM,
			wantEvent: "TrustBundleInvalid",
		},
		"garbage in the root secret publishes nothing": {
			objs: []client.Object{
				secret(ns, cfg.Root.SecretName, map[string][]byte{"tls.crt": []byte("garbage")}),
				issued[1], issued[2],
			},
			wantEvent: "TrustBundleInvalid",
		},
		"nothing is published before cert-manager has issued": {
			objs: issued[:1],
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The fake client stamps resourceVersions on the objects it is
			// given, and parallel cases share them: give it copies.
			objs := make([]client.Object, len(tc.objs))
			for i, o := range tc.objs {
				objs[i] = o.DeepCopyObject().(client.Object)
			}
			c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
			rec := record.NewFakeRecorder(10)
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			r := &SourceReconciler{Client: c, Config: cfg, Recorder: rec, Metrics: m, Clock: clocktesting.NewFakePassiveClock(time.Now()), Rand: rand.Reader}
			if _, err := r.Reconcile(t.Context(), ctrl.Request{}); err != nil {
				t.Fatal(err)
			}
			var trustSecret corev1.Secret
			err = c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.TrustBundle.SecretName}, &trustSecret)
			switch {
			case tc.wantTrust == nil && err == nil:
				t.Errorf("a trust bundle was published: %q", trustSecret.Data["ca.crt"])
			case tc.wantTrust != nil && err != nil:
				t.Fatalf("no trust bundle: %v", err)
			case tc.wantTrust != nil && !bytes.Equal(trustSecret.Data["ca.crt"], tc.wantTrust):
				t.Errorf("published ca.crt is not the expected root")
			}
			if tc.wantTrust != nil && len(trustSecret.Data) != 1 {
				t.Errorf("trust secret keys: %d, want only ca.crt", len(trustSecret.Data))
			}
			var tok corev1.Secret
			if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: cfg.IdentityToken.SecretName}, &tok); err != nil {
				t.Fatal(err)
			}
			if tc.wantToken != nil {
				tc.wantToken(t, tok.Data["token"])
			}
			close(rec.Events)
			var events []string
			for e := range rec.Events {
				events = append(events, e)
				if strings.Contains(e, string(tok.Data["token"])) || strings.Contains(e, "PRIVATE KEY") {
					t.Errorf("event carries secret data: %s", e)
				}
			}
			if tc.wantEvent != "" && !strings.Contains(strings.Join(events, "\n"), tc.wantEvent) {
				t.Errorf("events %v lack %s", events, tc.wantEvent)
			}
		})
	}
}

func TestContentHashIgnoresKeyOrder(t *testing.T) {
	t.Parallel()
	a := contentHash(map[string][]byte{"a": []byte("1"), "b": []byte("2")})
	b := contentHash(map[string][]byte{"b": []byte("2"), "a": []byte("1")})
	c := contentHash(map[string][]byte{"a": []byte("12"), "b": []byte("")})
	if a != b || a == c {
		t.Errorf("hashes: %s %s %s", a, b, c)
	}
}

func TestForgettingAClusterDeletesItsSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.clusterSynced.WithLabelValues("gone").Set(1)
	m.clusterSynced.WithLabelValues("kept").Set(1)
	m.syncErrors.WithLabelValues("gone", "Unreachable").Inc()
	m.forgetCluster("gone")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "cluster" && l.GetValue() == "gone" {
					t.Errorf("%s still has a series for the forgotten cluster", f.GetName())
				}
			}
		}
	}
}

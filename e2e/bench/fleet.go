package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/relay-pki/relay-pki/e2e/framework"
	"github.com/relay-pki/relay-pki/internal/testpki"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

const (
	registrationNamespace = "relay-pki-system"
	fieldManager          = "relay-pki-bench"
	// trustSourceName is the ConfigMap the controller reads the roots
	// from, as with an external issuer: editing it is the trust change.
	trustSourceName = "relay-bench-roots"
)

// cluster is one logical workload cluster: a namespace of one of the
// remote apiservers, reached with a user of its own.
type cluster struct {
	name       string
	namespace  string
	plane      int // index into the remote planes
	kubeconfig string
}

func clusterName(i int) string { return fmt.Sprintf("bench-%04d", i) }

// addClusters registers clusters [from, to): a user with its own client
// certificate on remote plane i%2, a kubeconfig file for the kubectl loop,
// and a registration Secret whose relay-pki.io/namespace annotation gives
// the cluster its own target namespace.
func addClusters(ctx context.Context, mgmt kubernetes.Interface, remotes []*framework.ControlPlane, dir string, from, to int) ([]cluster, error) {
	out := make([]cluster, to-from)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := from; i < to; i++ {
		g.Go(func() error {
			c := cluster{name: clusterName(i), namespace: clusterName(i), plane: i % len(remotes)}
			kc, err := remotes[c.plane].AddUser(c.name, "system:masters")
			if err != nil {
				return err
			}
			c.kubeconfig = filepath.Join(dir, c.name+".kubeconfig")
			if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
				return err
			}
			reg := corev1ac.Secret(c.name, registrationNamespace).
				WithLabels(map[string]string{relaysync.ClusterLabel: c.name}).
				WithAnnotations(map[string]string{relaysync.NamespaceAnnotation: c.namespace}).
				WithData(map[string][]byte{relaysync.KubeconfigKey: kc})
			if _, err := mgmt.CoreV1().Secrets(registrationNamespace).Apply(ctx, reg, metav1.ApplyOptions{FieldManager: fieldManager}); err != nil {
				return fmt.Errorf("register %s: %w", c.name, err)
			}
			out[i-from] = c
			return nil
		})
	}
	return out, g.Wait()
}

// pki is what an external issuer would have produced: a root, and a
// server and a signing certificate issued by it.
type pki struct {
	rootA   []byte
	server  map[string][]byte
	signing map[string][]byte
}

// aYear outlives any bench run.
func aYear() testpki.Options {
	return testpki.Options{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour)}
}

// newRoot is a self-signed CA certificate, PEM.
func newRoot(cn string) ([]byte, error) {
	c, err := testpki.Issue(cn, true, nil, aYear())
	if err != nil {
		return nil, err
	}
	return c.PEM, nil
}

func newPKI() (*pki, error) {
	root, err := testpki.Issue("bench root A", true, nil, aYear())
	if err != nil {
		return nil, err
	}
	serverOpts := aYear()
	serverOpts.DNSNames = []string{"*.gloo-mesh"}
	serverOpts.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	server, err := testpki.Issue("*.gloo-mesh", false, root, serverOpts)
	if err != nil {
		return nil, err
	}
	signing, err := testpki.Issue("relay-tls-signing", true, root, aYear())
	if err != nil {
		return nil, err
	}
	serverKey, err := server.KeyPEM()
	if err != nil {
		return nil, err
	}
	signingKey, err := signing.KeyPEM()
	if err != nil {
		return nil, err
	}
	return &pki{
		rootA:   root.PEM,
		server:  map[string][]byte{"tls.crt": server.PEM, "tls.key": serverKey, "ca.crt": root.PEM},
		signing: map[string][]byte{"tls.crt": signing.PEM, "tls.key": signingKey, "ca.crt": root.PEM},
	}, nil
}

// seedManagement creates what the controller starts from: the namespaces,
// the issued server and signing secrets and the trust source.
func seedManagement(ctx context.Context, mgmt kubernetes.Interface, ns string, p *pki, serverSecret, signingSecret string) error {
	for _, n := range []string{ns, registrationNamespace} {
		if _, err := mgmt.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", n, err)
		}
	}
	for name, data := range map[string]map[string][]byte{serverSecret: p.server, signingSecret: p.signing} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeTLS, Data: data}
		if _, err := mgmt.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create secret %s: %w", name, err)
		}
	}
	return setTrustSource(ctx, mgmt, ns, p.rootA)
}

func setTrustSource(ctx context.Context, mgmt kubernetes.Interface, ns string, roots []byte) error {
	cm := corev1ac.ConfigMap(trustSourceName, ns).WithData(map[string]string{"ca.crt": string(roots)})
	if _, err := mgmt.CoreV1().ConfigMaps(ns).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("write trust source ConfigMap %s: %w", trustSourceName, err)
	}
	return nil
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/relay-pki/relay-pki/e2e/framework"
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

// newRoot is a self-signed CA certificate, PEM.
func newRoot(cn string) ([]byte, error) {
	der, _, err := newCert(cn, nil, nil, true)
	if err != nil {
		return nil, err
	}
	return pemCert(der), nil
}

func newPKI() (*pki, error) {
	rootA, keyA, err := newCert("bench root A", nil, nil, true)
	if err != nil {
		return nil, err
	}
	caA, err := x509.ParseCertificate(rootA)
	if err != nil {
		return nil, err
	}
	server, serverKey, err := newCert("*.gloo-mesh", caA, keyA, false)
	if err != nil {
		return nil, err
	}
	signing, signingKey, err := newCert("relay-tls-signing", caA, keyA, true)
	if err != nil {
		return nil, err
	}
	pemA := pemCert(rootA)
	serverKeyPEM, err := pemKey(serverKey)
	if err != nil {
		return nil, err
	}
	signingKeyPEM, err := pemKey(signingKey)
	if err != nil {
		return nil, err
	}
	return &pki{
		rootA:   pemA,
		server:  map[string][]byte{"tls.crt": pemCert(server), "tls.key": serverKeyPEM, "ca.crt": pemA},
		signing: map[string][]byte{"tls.crt": pemCert(signing), "tls.key": signingKeyPEM, "ca.crt": pemA},
	}, nil
}

func newCert(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (der []byte, key *ecdsa.PrivateKey, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true, IsCA: isCA,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.DNSNames = []string{cn}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent, parentKey
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		return nil, nil, err
	}
	return der, key, nil
}

func pemKey(key *ecdsa.PrivateKey) ([]byte, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
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

// Package inspect reads the relay PKI as it stands, in the management cluster
// and in every registered workload cluster, for `relay-pki status` (is
// everything healthy?) and `relay-pki verify` (does every secret have the
// properties the relay needs?). It reads live objects, never the
// controller's own status annotations alone, so it can catch what the
// controller has not (yet) repaired. It never prints secret data: tokens
// and bundles are compared by SHA-256.
package inspect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	stdsync "sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/rotate"
	relaysync "github.com/relay-pki/relay-pki/sync"
	"github.com/relay-pki/relay-pki/sync/remote"
)

// Options say where to look.
type Options struct {
	Config                *config.Config
	RegistrationNamespace string
	// Timeout bounds reading one workload cluster.
	Timeout time.Duration
	// Parallel workload clusters read at once.
	Parallel int
}

// Snapshot is everything status and verify judge.
type Snapshot struct {
	Config *config.Config
	Taken  time.Time
	// Certificates are relay-pki's cert-manager Certificates, in apply
	// order; Missing lists those that do not exist.
	Certificates []cmapi.Certificate
	Missing      []string
	// Issuers are relay-pki's own Issuers (none with an issuerRef).
	Issuers []cmapi.Issuer
	// Management holds the relay namespace's Secrets by name (nil when
	// absent).
	Management map[string]*corev1.Secret
	Clusters   []Cluster
	// Rotation is the root rotation's state (Idle outside one); Roots the
	// root slots it keeps.
	Rotation rotate.Status
	Roots    issuer.Roots
}

// Cluster is one registration and what its workload cluster holds.
type Cluster struct {
	Name         string
	Registration string
	Namespace    string
	// State, Message, SyncedAt are the controller's annotations.
	State, Message, SyncedAt string
	// Err is set when the cluster could not be read at all.
	Err error
	// Secrets by name as the cluster holds them (nil when absent).
	Secrets map[string]*corev1.Secret
}

// Take reads the management cluster, then every workload cluster in
// parallel with the credentials of its registration, which are the only
// ones relay-pki has.
func Take(ctx context.Context, c client.Reader, o Options) (*Snapshot, error) {
	cfg := o.Config
	s := &Snapshot{Config: cfg, Taken: time.Now(), Management: map[string]*corev1.Secret{}, Roots: issuer.SteadyRoots(0)}
	if cfg.Issuer.Mode() == config.ModeSelfSigned {
		st, err := rotate.Read(ctx, c, cfg)
		if err != nil {
			return nil, err
		}
		s.Rotation, s.Roots = st, st.Roots()
	}
	for _, obj := range issuer.BuildWithRoots(cfg, s.Roots) {
		if _, ok := obj.(*cmapi.Issuer); ok {
			var iss cmapi.Issuer
			err := c.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: obj.GetName()}, &iss)
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("read Issuer %s/%s: %w", cfg.Namespace, obj.GetName(), err)
			}
			if err == nil {
				s.Issuers = append(s.Issuers, iss)
			}
			continue
		}
		if _, ok := obj.(*cmapi.Certificate); !ok {
			continue
		}
		var crt cmapi.Certificate
		err := c.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: obj.GetName()}, &crt)
		switch {
		case apierrors.IsNotFound(err):
			s.Missing = append(s.Missing, obj.GetName())
		case err != nil:
			return nil, fmt.Errorf("read Certificate %s/%s: %w", cfg.Namespace, obj.GetName(), err)
		default:
			s.Certificates = append(s.Certificates, crt)
		}
	}
	for _, name := range ManagementSecrets(cfg, s.Roots) {
		var sec corev1.Secret
		err := c.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: name}, &sec)
		switch {
		case apierrors.IsNotFound(err):
			s.Management[name] = nil
		case err != nil:
			return nil, fmt.Errorf("read Secret %s/%s: %w", cfg.Namespace, name, err)
		default:
			s.Management[name] = &sec
		}
	}

	var regs corev1.SecretList
	if err := c.List(ctx, &regs, client.InNamespace(o.RegistrationNamespace), client.HasLabels{relaysync.ClusterLabel}); err != nil {
		return nil, fmt.Errorf("list registrations in %s: %w", o.RegistrationNamespace, err)
	}
	s.Clusters = make([]Cluster, len(regs.Items))
	parallel := max(o.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var wg stdsync.WaitGroup
	for i := range regs.Items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.Clusters[i] = readCluster(ctx, &regs.Items[i], cfg, o.Timeout)
		}()
	}
	wg.Wait()
	sort.Slice(s.Clusters, func(i, j int) bool { return s.Clusters[i].Name < s.Clusters[j].Name })
	return s, nil
}

// ManagementSecrets are the seed's secrets in the management cluster (the
// roots' only with a self-signed root: one per slot the rotation keeps).
func ManagementSecrets(cfg *config.Config, roots issuer.Roots) []string {
	names := []string{cfg.Server.SecretName, cfg.Signing.SecretName, cfg.TrustBundle.SecretName, cfg.IdentityToken.SecretName}
	if cfg.Issuer.Mode() == config.ModeSelfSigned {
		var rootSecrets []string
		for _, slot := range roots.Slots {
			rootSecrets = append(rootSecrets, issuer.RootSlot(cfg, slot).Secret)
		}
		names = append(rootSecrets, names...)
	}
	return names
}

func readCluster(ctx context.Context, reg *corev1.Secret, cfg *config.Config, timeout time.Duration) Cluster {
	cl := Cluster{
		Name: reg.Labels[relaysync.ClusterLabel], Registration: reg.Name, Namespace: cfg.Namespace,
		State: reg.Annotations[relaysync.StateAnnotation], Message: reg.Annotations[relaysync.MessageAnnotation],
		SyncedAt: reg.Annotations[relaysync.SyncedAtAnnotation],
	}
	if ns := reg.Annotations[relaysync.NamespaceAnnotation]; ns != "" {
		cl.Namespace = ns
	}
	rc, err := remote.RESTConfig(reg.Data[relaysync.KubeconfigKey], remote.KubeconfigPolicy{})
	if err != nil {
		cl.Err = err
		return cl
	}
	rc.Timeout = timeout
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		cl.Err = err
		return cl
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl.Secrets = map[string]*corev1.Secret{}
	for _, name := range []string{cfg.TrustBundle.SecretName, cfg.IdentityToken.SecretName} {
		sec, err := cs.CoreV1().Secrets(cl.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cl.Secrets[name] = nil
		case err != nil:
			cl.Err = fmt.Errorf("read Secret %s/%s: %w", cl.Namespace, name, err)
			return cl
		default:
			cl.Secrets[name] = sec
		}
	}
	return cl
}

// Bundle is the management trust bundle (ca.crt of relay-root-tls-secret),
// or nil.
func (s *Snapshot) Bundle() []byte {
	if sec := s.Management[s.Config.TrustBundle.SecretName]; sec != nil {
		return sec.Data["ca.crt"]
	}
	return nil
}

// Token is the management identity token, or nil.
func (s *Snapshot) Token() []byte {
	if sec := s.Management[s.Config.IdentityToken.SecretName]; sec != nil {
		return sec.Data[s.Config.IdentityToken.Key]
	}
	return nil
}

func digest(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// short shortens a digest for messages.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "none"
	}
	return h
}

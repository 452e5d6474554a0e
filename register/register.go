// Package register connects a workload cluster to relay-pki: in the workload
// cluster, a ServiceAccount whose Role can touch only relay-pki's two
// Secrets; in the management cluster, the registration Secret whose
// kubeconfig carries that ServiceAccount's token. The objects are built by
// pure functions so that --dry-run prints exactly what a real run writes.
package register

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

// ServiceAccountName is the identity relay-pki uses in a workload cluster;
// its Role and RoleBinding have the same name.
const ServiceAccountName = "relay-pki-sync"

// Options describe one registration.
type Options struct {
	// Cluster is the name shown in status, events and metrics; it also names
	// the registration Secret.
	Cluster string
	Config  *config.Config
	// RegistrationNamespace holds the registration Secrets in the
	// management cluster (the controller's namespace).
	RegistrationNamespace string
	// TargetNamespace in the workload cluster; empty means the config's.
	TargetNamespace string
	// Server overrides the workload apiserver URL written into the
	// registration, for when the controller reaches it by another address.
	Server string
	// TokenTTL is the lifetime requested for the ServiceAccount token.
	TokenTTL time.Duration
}

// Validate names the option at fault.
func (o *Options) Validate() error {
	if msgs := validation.IsDNS1123Subdomain(o.Cluster); len(msgs) > 0 {
		return fmt.Errorf("cluster name %q: %s (it names the registration Secret)", o.Cluster, msgs[0])
	}
	if len(o.Cluster) > validation.LabelValueMaxLength {
		return fmt.Errorf("cluster name %q: longer than %d characters (it is a label value)", o.Cluster, validation.LabelValueMaxLength)
	}
	if msgs := validation.IsDNS1123Label(o.RegistrationNamespace); len(msgs) > 0 {
		return fmt.Errorf("--registration-namespace %q: %s", o.RegistrationNamespace, msgs[0])
	}
	if o.TargetNamespace != "" {
		if msgs := validation.IsDNS1123Label(o.TargetNamespace); len(msgs) > 0 {
			return fmt.Errorf("--target-namespace %q: %s", o.TargetNamespace, msgs[0])
		}
	}
	if o.TokenTTL < 10*time.Minute {
		return fmt.Errorf("--token-ttl %s: must be at least 10m (the apiserver's minimum)", o.TokenTTL)
	}
	return nil
}

func (o *Options) target() string {
	if o.TargetNamespace != "" {
		return o.TargetNamespace
	}
	return o.Config.Namespace
}

func labels() map[string]string {
	return map[string]string{issuer.ManagedByLabel: issuer.ManagedBy}
}

// RemoteObjects are written to the workload cluster, in order. The Role is
// the least relay-pki needs: read, watch and write its two Secrets by name
// (list and watch are authorized by name because relay-pki always sends a
// metadata.name field selector), delete them only under deletionPolicy
// Delete, and create Secrets, which Kubernetes cannot restrict by name.
func RemoteObjects(o Options) []client.Object {
	ns := o.target()
	names := []string{o.Config.TrustBundle.SecretName, o.Config.IdentityToken.SecretName}
	verbs := []string{"get", "list", "watch", "update", "patch"}
	if o.Config.Sync.DeletionPolicy == config.DeletionPolicyDelete {
		verbs = append(verbs, "delete")
	}
	meta := func(kind string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: ServiceAccountName, Namespace: ns, Labels: labels()}
		if kind == "Namespace" {
			// No label: the namespace is usually Gloo Mesh's, not ours.
			m = metav1.ObjectMeta{Name: ns}
		}
		return m
	}
	return []client.Object{
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: meta("Namespace")},
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta("ServiceAccount")},
		&rbacv1.Role{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta("Role"),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: names, Verbs: verbs},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
			},
		},
		&rbacv1.RoleBinding{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta("RoleBinding"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: ServiceAccountName},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: ServiceAccountName, Namespace: ns}},
		},
	}
}

// Kubeconfig is the registration's kubeconfig: everything inline, as the
// controller requires, and the target namespace as the context's default.
func Kubeconfig(cluster, server string, caData []byte, tlsServerName, namespace, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData, TLSServerName: tlsServerName}
	cfg.AuthInfos[ServiceAccountName] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: ServiceAccountName, Namespace: namespace}
	cfg.CurrentContext = cluster
	return clientcmd.Write(*cfg)
}

// RegistrationSecret is written to the management cluster.
func RegistrationSecret(o Options, kubeconfig []byte) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name: o.Cluster, Namespace: o.RegistrationNamespace,
			Labels: map[string]string{relaysync.ClusterLabel: o.Cluster, issuer.ManagedByLabel: issuer.ManagedBy},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{relaysync.KubeconfigKey: kubeconfig},
	}
	if o.target() != o.Config.Namespace {
		s.Annotations = map[string]string{relaysync.NamespaceAnnotation: o.target()}
	}
	return s
}

// Result says what a registration wrote.
type Result struct {
	Server          string
	TargetNamespace string
	TokenExpires    time.Time
}

// Register writes both sides. The workload side goes first: a registration
// that names credentials which do not exist yet would only show Forbidden.
func Register(ctx context.Context, mgmt client.Client, remote *rest.Config, o Options) (Result, error) {
	rc, err := client.New(remote, client.Options{})
	if err != nil {
		return Result{}, fmt.Errorf("workload cluster client: %w", err)
	}
	for _, obj := range RemoteObjects(o) {
		if err := ssa.ApplyObjectsAs(ctx, rc, ssa.RegisterFieldManager, []client.Object{obj}); err != nil {
			return Result{}, fmt.Errorf("workload cluster %s: %w", o.Cluster, err)
		}
	}
	cs, err := kubernetes.NewForConfig(remote)
	if err != nil {
		return Result{}, fmt.Errorf("workload cluster client: %w", err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(o.target()).CreateToken(ctx, ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(o.TokenTTL / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return Result{}, fmt.Errorf("workload cluster %s: request a token for ServiceAccount %s/%s: %w", o.Cluster, o.target(), ServiceAccountName, err)
	}
	server := o.Server
	if server == "" {
		server = remote.Host
	}
	caData, err := caData(remote)
	if err != nil {
		return Result{}, err
	}
	kc, err := Kubeconfig(o.Cluster, server, caData, remote.TLSClientConfig.ServerName, o.target(), tr.Status.Token)
	if err != nil {
		return Result{}, fmt.Errorf("write the registration kubeconfig: %w", err)
	}
	if err := ssa.ApplyObjectsAs(ctx, mgmt, ssa.RegisterFieldManager, []client.Object{RegistrationSecret(o, kc)}); err != nil {
		return Result{}, fmt.Errorf("management cluster: %w", err)
	}
	return Result{Server: server, TargetNamespace: o.target(), TokenExpires: tr.Status.ExpirationTimestamp.Time}, nil
}

// caData inlines the workload cluster's CA: registrations may not reference
// files.
func caData(c *rest.Config) ([]byte, error) {
	if len(c.TLSClientConfig.CAData) > 0 {
		return c.TLSClientConfig.CAData, nil
	}
	if c.TLSClientConfig.CAFile != "" {
		if err := rest.LoadTLSFiles(c); err != nil {
			return nil, fmt.Errorf("read the workload cluster's CA: %w", err)
		}
		return c.TLSClientConfig.CAData, nil
	}
	return nil, nil
}

// Deregister deletes the registration Secret; the controller then retains or
// deletes the copies in the workload cluster as deletionPolicy says. With a
// remote config it also removes the ServiceAccount, Role and RoleBinding
// there, which revokes every token issued for them (the namespace stays: it
// holds Gloo Mesh).
func Deregister(ctx context.Context, mgmt client.Client, remote *rest.Config, o Options) ([]string, error) {
	var done []string
	reg := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: o.Cluster, Namespace: o.RegistrationNamespace}}
	if err := mgmt.Delete(ctx, reg); err != nil && !apierrors.IsNotFound(err) {
		return done, fmt.Errorf("management cluster: delete registration Secret %s/%s: %w", o.RegistrationNamespace, o.Cluster, err)
	} else if err == nil {
		done = append(done, fmt.Sprintf("secret %s/%s deleted", o.RegistrationNamespace, o.Cluster))
	}
	if remote == nil {
		return done, nil
	}
	rc, err := client.New(remote, client.Options{})
	if err != nil {
		return done, fmt.Errorf("workload cluster client: %w", err)
	}
	objs := RemoteObjects(o)
	for i := len(objs) - 1; i >= 1; i-- { // never the namespace
		err := rc.Delete(ctx, objs[i])
		if err != nil && !apierrors.IsNotFound(err) {
			return done, fmt.Errorf("workload cluster %s: delete %s %s/%s: %w", o.Cluster, objs[i].GetObjectKind().GroupVersionKind().Kind, objs[i].GetNamespace(), objs[i].GetName(), err)
		}
		if err == nil {
			done = append(done, fmt.Sprintf("%s %s/%s deleted in %s", objs[i].GetObjectKind().GroupVersionKind().Kind, objs[i].GetNamespace(), objs[i].GetName(), o.Cluster))
		}
	}
	return done, nil
}

// Package config is relay-pki's one configuration file: a versioned, strictly
// decoded YAML document whose defaults reproduce the names and certificate
// properties of Gloo Mesh Enterprise's manual relay PKI procedure.
package config

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// APIVersion is the only configuration version this build reads.
	APIVersion = "relay-pki.io/v1alpha1"
	// Kind is the only configuration kind this build reads.
	Kind = "Config"
)

// Config describes the relay PKI: where it lives, the three certificates, the
// two distributed secrets, who signs, and the optional Istio ingress.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// Namespace holds every object in the management cluster and is the
	// target namespace in workload clusters.
	Namespace string `json:"namespace,omitempty"`

	// DNSNames are extra subject alternative names for the server
	// certificate, such as the host agents dial; the common name is always
	// included.
	DNSNames []string `json:"dnsNames,omitempty"`

	// Root is the self-signed relay root. Used only with issuer.selfSigned.
	Root Certificate `json:"root"`
	// Server is the relay server's TLS certificate.
	Server Certificate `json:"server"`
	// Signing is the CA-enabled certificate the relay server issues agent
	// certificates with.
	Signing Certificate `json:"signing"`

	// TrustBundle is the secret (key ca.crt) published in every cluster.
	TrustBundle TrustBundle `json:"trustBundle"`
	// IdentityToken is the shared bootstrap token published in every cluster.
	IdentityToken IdentityToken `json:"identityToken"`

	Issuer       Issuer       `json:"issuer"`
	IstioIngress IstioIngress `json:"istioIngress"`

	// Sync is how `relay-pki controller` distributes the trust bundle and
	// token to registered clusters.
	Sync Sync `json:"sync"`

	// Rotation paces a staged root key rotation (issuer.selfSigned only).
	Rotation Rotation `json:"rotation"`
}

// Rotation configures the stages of a root key rotation.
type Rotation struct {
	// GracePeriod is how long the old root stays trusted after the server
	// and signing certificates chain to the new one: long enough for every
	// agent to renew a client certificate issued under the old chain.
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
	// DistributionTimeout bounds the wait for every cluster to confirm a
	// bundle; past it the rotation goes on without the clusters that have
	// not, and names them. 0 waits for as long as it takes.
	DistributionTimeout *metav1.Duration `json:"distributionTimeout,omitempty"`
}

// DeletionPolicy says what happens to a cluster's copies when its
// registration is removed.
type DeletionPolicy string

const (
	// DeletionPolicyRetain leaves the copies: agents keep working.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete removes what relay-pki manages in the cluster.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// Sync configures the distribution controller.
type Sync struct {
	// CreateNamespace creates the target namespace in a cluster that lacks it.
	CreateNamespace *bool `json:"createNamespace,omitempty"`
	// AdoptExisting takes over a same-named Secret relay-pki did not create;
	// otherwise such a Secret is left alone and reported as a Conflict.
	AdoptExisting bool `json:"adoptExisting"`
	// DeletionPolicy applies when a registration is removed.
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
	// ResyncPeriod re-checks every cluster even without events.
	ResyncPeriod *metav1.Duration `json:"resyncPeriod,omitempty"`
}

// Certificate is what can be set on each of the three certificates.
type Certificate struct {
	// SecretName is the Secret cert-manager writes the key pair to.
	SecretName   string     `json:"secretName,omitempty"`
	CommonName   string     `json:"commonName,omitempty"`
	Organization string     `json:"organization,omitempty"`
	PrivateKey   PrivateKey `json:"privateKey"`
	// Duration is the requested validity. Go duration syntax ("8760h").
	Duration *metav1.Duration `json:"duration,omitempty"`
	// RenewBefore is how long before expiry cert-manager re-issues.
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// KeyAlgorithm names a private key algorithm as cert-manager spells it.
type KeyAlgorithm string

const (
	RSA     KeyAlgorithm = "RSA"
	ECDSA   KeyAlgorithm = "ECDSA"
	Ed25519 KeyAlgorithm = "Ed25519"
)

// PrivateKey selects the key algorithm and size (bits for RSA, curve size for
// ECDSA, none for Ed25519).
type PrivateKey struct {
	Algorithm KeyAlgorithm `json:"algorithm,omitempty"`
	Size      int          `json:"size,omitempty"`
}

// TrustBundle names the CA-only secret distributed to every cluster and,
// with an external issuer, where its roots come from.
type TrustBundle struct {
	SecretName string `json:"secretName,omitempty"`
	// Source holds the root certificate(s) agents must trust when an
	// external issuer signs. Without it the server secret's ca.crt is used;
	// in selfSigned mode the root is always the generated relay root.
	Source *TrustSource `json:"source,omitempty"`
}

// TrustSource is a key of a Secret or a ConfigMap in the namespace.
type TrustSource struct {
	SecretRef    *SecretKeyRef `json:"secretRef,omitempty"`
	ConfigMapRef *SecretKeyRef `json:"configMapRef,omitempty"`
}

// IdentityToken names the shared token secret and its key.
type IdentityToken struct {
	SecretName string `json:"secretName,omitempty"`
	Key        string `json:"key,omitempty"`
}

// Issuer chooses who signs the server and signing certificates. Exactly one
// field may be set; none means selfSigned.
type Issuer struct {
	// SelfSigned bootstraps a relay root in the cluster and signs with it.
	SelfSigned *SelfSignedIssuer `json:"selfSigned,omitempty"`
	// IssuerRef signs with an existing issuer: an Issuer in the namespace, a
	// ClusterIssuer, or an out-of-tree issuer named by group and kind.
	IssuerRef *IssuerRef `json:"issuerRef,omitempty"`
	// Vault generates cert-manager Vault Issuers from these settings.
	Vault *VaultIssuer `json:"vault,omitempty"`
}

// SelfSignedIssuer has no settings; its presence selects the mode.
type SelfSignedIssuer struct{}

// IssuerRef is a reference to an issuer relay-pki does not manage.
type IssuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

// VaultIssuer configures cert-manager's Vault issuer.
type VaultIssuer struct {
	// Server is the Vault address; must be https.
	Server string `json:"server"`
	// Path signs the server certificate, e.g. "pki_int/sign/relay-server".
	Path string `json:"path"`
	// SigningPath signs the CA-enabled signing certificate. Vault roles only
	// issue leaves, so this is usually a "<mount>/root/sign-intermediate"
	// path. Empty means Path signs both.
	SigningPath string `json:"signingPath,omitempty"`
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string `json:"vaultNamespace,omitempty"`
	// CABundle is PEM that verifies Vault's TLS certificate.
	CABundle string    `json:"caBundle,omitempty"`
	Auth     VaultAuth `json:"auth"`
}

// VaultAuth: exactly one method.
type VaultAuth struct {
	TokenSecretRef *SecretKeyRef        `json:"tokenSecretRef,omitempty"`
	AppRole        *VaultAppRole        `json:"appRole,omitempty"`
	Kubernetes     *VaultKubernetesAuth `json:"kubernetes,omitempty"`
}

// SecretKeyRef names a key of a Secret in the configured namespace.
type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// VaultAppRole is Vault's AppRole login.
type VaultAppRole struct {
	Path      string       `json:"path"`
	RoleID    string       `json:"roleId"`
	SecretRef SecretKeyRef `json:"secretRef"`
}

// VaultKubernetesAuth is Vault's Kubernetes login, with either a bound
// service account token (preferred) or a token stored in a Secret.
type VaultKubernetesAuth struct {
	MountPath         string             `json:"mountPath,omitempty"`
	Role              string             `json:"role"`
	ServiceAccountRef *ServiceAccountRef `json:"serviceAccountRef,omitempty"`
	SecretRef         *SecretKeyRef      `json:"secretRef,omitempty"`
}

// ServiceAccountRef is a service account cert-manager requests tokens for.
type ServiceAccountRef struct {
	Name      string   `json:"name"`
	Audiences []string `json:"audiences,omitempty"`
}

// IstioIngress renders the Gateway and VirtualService that pass relay TLS
// through Istio's ingress gateway to enterprise-networking.
type IstioIngress struct {
	Enabled bool `json:"enabled"`
	// Name of the Gateway and VirtualService.
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Host is the SNI name agents dial; the server certificate must cover it.
	Host string `json:"host,omitempty"`
	Port int32  `json:"port,omitempty"`
	// DestinationHost is the enterprise-networking Service's cluster name.
	DestinationHost string `json:"destinationHost,omitempty"`
	TargetPort      int32  `json:"targetPort,omitempty"`
	// GatewaySelector selects the ingress gateway pods.
	GatewaySelector map[string]string `json:"gatewaySelector,omitempty"`
}

// Mode is the issuer mode in effect after defaulting.
type Mode string

const (
	ModeSelfSigned Mode = "selfSigned"
	ModeIssuerRef  Mode = "issuerRef"
	ModeVault      Mode = "vault"
)

// Mode reports which issuer mode is selected; selfSigned when none is.
func (i Issuer) Mode() Mode {
	switch {
	case i.IssuerRef != nil:
		return ModeIssuerRef
	case i.Vault != nil:
		return ModeVault
	default:
		return ModeSelfSigned
	}
}

// Mount is the PKI secrets engine mount of Path: everything before its
// signing endpoint (".../sign/<role>", ".../issue/<role>",
// ".../root/sign-intermediate", ".../sign-verbatim[/<role>]").
func (v *VaultIssuer) Mount() string { return vaultMount(v.Path) }

func vaultMount(path string) string {
	path = strings.Trim(path, "/")
	for _, marker := range []string{"/root/sign-intermediate", "/sign-intermediate", "/sign-verbatim", "/sign/", "/issue/"} {
		if i := strings.LastIndex(path, marker); i > 0 {
			return path[:i]
		}
	}
	return path
}

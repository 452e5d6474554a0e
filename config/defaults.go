package config

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names and subjects from Gloo Mesh Enterprise's prerequisites page; the relay
// server and agents' Helm values default to these secret names.
const (
	DefaultNamespace         = "gloo-mesh"
	DefaultCommonName        = "*.gloo-mesh"
	DefaultRootSecret        = "relay-root-ca"
	DefaultServerSecret      = "relay-server-tls-secret"
	DefaultSigningSecret     = "relay-tls-signing-secret"
	DefaultTrustBundleSecret = "relay-root-tls-secret"
	DefaultTokenSecret       = "relay-identity-token-secret"
	DefaultTokenKey          = "token"
	DefaultIngressName       = "gloo-mesh-ingress"
	DefaultIngressPort       = 443
	DefaultTargetPort        = 9900
	relayService             = "enterprise-networking"
	// SecondRootSuffix names the second root slot's Secret: a key rotation
	// mints the new root beside the current one (relay-root-ca-2, then back).
	SecondRootSuffix = "-2"
)

// The seed signs everything for ten years and nothing renews it. The root
// keeps that lifetime (its key never rotates on renewal, so renewing it is
// harmless); the server and signing certificates are short enough that
// cert-manager's automatic renewal is exercised every year instead of never.
var (
	defaultRootDuration    = 10 * 365 * 24 * time.Hour
	defaultRootRenewBefore = 365 * 24 * time.Hour
	defaultLeafDuration    = 365 * 24 * time.Hour
	defaultResyncPeriod    = 10 * time.Minute
	// A week: agents renew client certificates well within that, and a
	// rotation has no reason to hurry once both roots are trusted.
	defaultRotationGrace       = 7 * 24 * time.Hour
	defaultLeafRenewBefore     = 30 * 24 * time.Hour
	defaultRootKey             = PrivateKey{Algorithm: RSA, Size: 4096}
	defaultLeafKey             = PrivateKey{Algorithm: RSA, Size: 2048}
	defaultIngressSelectorKey  = "istio"
	defaultIngressSelectorVal  = "ingressgateway"
	defaultIssuerRefKind       = "Issuer"
	defaultIssuerRefGroup      = "cert-manager.io"
	defaultVaultKubernetesPath = "/v1/auth/kubernetes"
)

// Default returns the configuration used when no file is given.
func Default() *Config {
	c := &Config{APIVersion: APIVersion, Kind: Kind}
	SetDefaults(c)
	return c
}

// SetDefaults fills every unset field. It runs after flag overrides so that
// derived defaults (the Istio namespace and destination) follow them.
func SetDefaults(c *Config) {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	setCertificateDefaults(&c.Root, DefaultRootSecret, "relay-root", defaultRootKey, defaultRootDuration, defaultRootRenewBefore)
	setCertificateDefaults(&c.Server, DefaultServerSecret, "relay-server-tls", defaultLeafKey, defaultLeafDuration, defaultLeafRenewBefore)
	setCertificateDefaults(&c.Signing, DefaultSigningSecret, "relay-tls-signing", defaultLeafKey, defaultLeafDuration, defaultLeafRenewBefore)

	if c.TrustBundle.SecretName == "" {
		c.TrustBundle.SecretName = DefaultTrustBundleSecret
	}
	if c.IdentityToken.SecretName == "" {
		c.IdentityToken.SecretName = DefaultTokenSecret
	}
	if c.IdentityToken.Key == "" {
		c.IdentityToken.Key = DefaultTokenKey
	}

	iss := &c.Issuer
	if iss.SelfSigned == nil && iss.IssuerRef == nil && iss.Vault == nil {
		iss.SelfSigned = &SelfSignedIssuer{}
	}
	if r := iss.IssuerRef; r != nil {
		if r.Kind == "" {
			r.Kind = defaultIssuerRefKind
		}
		if r.Group == "" {
			r.Group = defaultIssuerRefGroup
		}
	}
	if v := iss.Vault; v != nil && v.Auth.Kubernetes != nil && v.Auth.Kubernetes.MountPath == "" {
		v.Auth.Kubernetes.MountPath = defaultVaultKubernetesPath
	}

	if c.Sync.CreateNamespace == nil {
		yes := true
		c.Sync.CreateNamespace = &yes
	}
	if c.Sync.DeletionPolicy == "" {
		c.Sync.DeletionPolicy = DeletionPolicyRetain
	}
	if c.Sync.ResyncPeriod == nil {
		c.Sync.ResyncPeriod = &metav1.Duration{Duration: defaultResyncPeriod}
	}

	if c.Rotation.GracePeriod == nil {
		c.Rotation.GracePeriod = &metav1.Duration{Duration: defaultRotationGrace}
	}
	if c.Rotation.DistributionTimeout == nil {
		c.Rotation.DistributionTimeout = &metav1.Duration{}
	}

	in := &c.IstioIngress
	if in.Name == "" {
		in.Name = DefaultIngressName
	}
	if in.Namespace == "" {
		in.Namespace = c.Namespace
	}
	if in.Host == "" {
		in.Host = relayService + "." + c.Namespace
	}
	if in.Port == 0 {
		in.Port = DefaultIngressPort
	}
	if in.DestinationHost == "" {
		in.DestinationHost = relayService + "." + c.Namespace + ".svc.cluster.local"
	}
	if in.TargetPort == 0 {
		in.TargetPort = DefaultTargetPort
	}
	if in.GatewaySelector == nil {
		in.GatewaySelector = map[string]string{defaultIngressSelectorKey: defaultIngressSelectorVal}
	}
}

func setCertificateDefaults(c *Certificate, secret, org string, key PrivateKey, duration, renewBefore time.Duration) {
	if c.SecretName == "" {
		c.SecretName = secret
	}
	if c.CommonName == "" {
		c.CommonName = DefaultCommonName
	}
	if c.Organization == "" {
		c.Organization = org
	}
	if c.PrivateKey.Algorithm == "" {
		c.PrivateKey.Algorithm = key.Algorithm
	}
	if c.PrivateKey.Size == 0 {
		switch {
		case c.PrivateKey.Algorithm == key.Algorithm:
			c.PrivateKey.Size = key.Size
		case c.PrivateKey.Algorithm == RSA:
			c.PrivateKey.Size = 2048
		case c.PrivateKey.Algorithm == ECDSA:
			c.PrivateKey.Size = 256
		}
	}
	// A user who shortens the lifetime without saying when to renew gets
	// cert-manager's own rule (renew at two thirds), not a fixed 30 days
	// that might exceed the lifetime.
	if c.RenewBefore == nil {
		rb := renewBefore
		if c.Duration != nil {
			rb = c.Duration.Duration / 3
		}
		c.RenewBefore = &metav1.Duration{Duration: rb}
	}
	if c.Duration == nil {
		c.Duration = &metav1.Duration{Duration: duration}
	}
}

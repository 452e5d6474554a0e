// Package issuer turns a validated configuration into the cert-manager
// objects of the relay PKI. Everything here is pure: no client, no clock, no
// randomness, so the same configuration always renders the same objects.
package issuer

import (
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
)

// Labels on every object and every issued Secret, so that caches and
// operators can select exactly what relay-pki owns.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "relay-pki"
	RoleLabel      = "relay-pki.io/role"
)

// Role is a certificate's place in the relay PKI.
type Role string

const (
	RoleRoot    Role = "root"
	RoleServer  Role = "server"
	RoleSigning Role = "signing"
)

// Names of the generated objects. The certificate names follow the seed's
// RELAY_*_CERT_NAME variables.
const (
	SelfSignedIssuerName   = "relay-selfsigned"
	RootCertificateName    = "relay-root"
	RootIssuerName         = "relay-root-ca"
	ServerCertificateName  = "relay-server-tls"
	SigningCertificateName = "relay-tls-signing"
	VaultIssuerName        = "relay-vault"
	VaultSigningIssuerName = "relay-vault-signing"
)

// Slot is one of the two places a self-signed root can live. Outside a
// rotation only the active slot exists; a key rotation mints the new root in
// the other slot, so the old root's CA Issuer keeps signing until every
// cluster trusts both, and the switch is a change of issuerRef.
type Slot int

// Other is the slot a rotation mints into.
func (s Slot) Other() Slot { return 1 - s }

// SlotNames are the Certificate, Secret and CA Issuer of a root slot. Slot 0
// keeps the names relay-pki has always used.
type SlotNames struct{ Certificate, Secret, Issuer string }

// RootSlot names the objects of slot s.
func RootSlot(c *config.Config, s Slot) SlotNames {
	if s == 0 {
		return SlotNames{RootCertificateName, c.Root.SecretName, RootIssuerName}
	}
	return SlotNames{RootCertificateName + config.SecondRootSuffix, c.Root.SecretName + config.SecondRootSuffix, RootIssuerName + config.SecondRootSuffix}
}

// Roots says which root slots exist and which one signs the server and
// signing certificates.
type Roots struct {
	Slots  []Slot
	Signer Slot
}

// SteadyRoots is the one-root layout outside a rotation.
func SteadyRoots(active Slot) Roots { return Roots{Slots: []Slot{active}, Signer: active} }

// Build returns every object of the relay PKI for c, in the order they can be
// applied: issuers before the certificates that reference them. c must have
// been defaulted and validated (config.Complete).
func Build(c *config.Config) []client.Object { return BuildWithRoots(c, SteadyRoots(0)) }

// BuildWithRoots is Build with the root slots of a rotation (selfSigned mode;
// other modes ignore roots).
func BuildWithRoots(c *config.Config, roots Roots) []client.Object {
	var objs []client.Object
	var serverRef, signingRef cmmeta.IssuerReference

	switch c.Issuer.Mode() {
	case config.ModeSelfSigned:
		objs = append(objs, newIssuer(c, SelfSignedIssuerName, RoleRoot, cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}))
		for _, slot := range roots.Slots {
			n := RootSlot(c, slot)
			root := c.Root
			root.SecretName = n.Secret
			objs = append(objs,
				newCertificate(c, n.Certificate, RoleRoot, &root, localIssuer(SelfSignedIssuerName)),
				newIssuer(c, n.Issuer, RoleRoot, cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: n.Secret}}),
			)
		}
		signer := localIssuer(RootSlot(c, roots.Signer).Issuer)
		serverRef, signingRef = signer, signer
	case config.ModeIssuerRef:
		r := c.Issuer.IssuerRef
		serverRef = cmmeta.IssuerReference{Name: r.Name, Kind: r.Kind, Group: r.Group}
		signingRef = serverRef
	case config.ModeVault:
		v := c.Issuer.Vault
		objs = append(objs, newIssuer(c, VaultIssuerName, RoleServer, cmapi.IssuerConfig{Vault: vaultIssuer(v, v.Path)}))
		serverRef, signingRef = localIssuer(VaultIssuerName), localIssuer(VaultIssuerName)
		if v.SigningPath != "" {
			objs = append(objs, newIssuer(c, VaultSigningIssuerName, RoleSigning, cmapi.IssuerConfig{Vault: vaultIssuer(v, v.SigningPath)}))
			signingRef = localIssuer(VaultSigningIssuerName)
		}
	}

	objs = append(objs,
		newCertificate(c, ServerCertificateName, RoleServer, &c.Server, serverRef),
		newCertificate(c, SigningCertificateName, RoleSigning, &c.Signing, signingRef),
	)
	if c.IstioIngress.Enabled {
		objs = append(objs, IstioIngress(c)...)
	}
	return objs
}

// Labels returns the labels relay-pki puts on an object or Secret of role.
func Labels(role Role) map[string]string {
	return map[string]string{ManagedByLabel: ManagedBy, RoleLabel: string(role)}
}

func localIssuer(name string) cmmeta.IssuerReference {
	return cmmeta.IssuerReference{Name: name, Kind: cmapi.IssuerKind, Group: "cert-manager.io"}
}

func newIssuer(c *config.Config, name string, role Role, spec cmapi.IssuerConfig) *cmapi.Issuer {
	return &cmapi.Issuer{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.IssuerKind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: Labels(role)},
		Spec:       cmapi.IssuerSpec{IssuerConfig: spec},
	}
}

func newCertificate(c *config.Config, name string, role Role, cert *config.Certificate, ref cmmeta.IssuerReference) *cmapi.Certificate {
	spec := cmapi.CertificateSpec{
		SecretName:     cert.SecretName,
		SecretTemplate: &cmapi.CertificateSecretTemplate{Labels: Labels(role)},
		CommonName:     cert.CommonName,
		DNSNames:       []string{cert.CommonName},
		Duration:       cert.Duration,
		RenewBefore:    cert.RenewBefore,
		IssuerRef:      ref,
		PrivateKey: &cmapi.CertificatePrivateKey{
			Algorithm: cmapi.PrivateKeyAlgorithm(cert.PrivateKey.Algorithm),
			Size:      cert.PrivateKey.Size,
			// cert-manager >= 1.18 defaults to Always. The root must keep its
			// key on renewal so every chain already issued stays valid;
			// replacing the root key is a staged rotation, not a renewal.
			RotationPolicy: cmapi.RotationPolicyAlways,
		},
	}
	if cert.Organization != "" {
		spec.Subject = &cmapi.X509Subject{Organizations: []string{cert.Organization}}
	}

	switch role {
	case RoleRoot:
		spec.IsCA = true
		spec.PrivateKey.RotationPolicy = cmapi.RotationPolicyNever
		// The seed's root has no keyUsage extension at all; a CA should say
		// what it may sign.
		spec.Usages = []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageCertSign, cmapi.UsageCRLSign}
	case RoleServer:
		spec.DNSNames = c.ServerDNSNames()
		spec.Usages = leafUsages(cert.PrivateKey.Algorithm)
	case RoleSigning:
		spec.IsCA = true
		spec.Usages = append(leafUsages(cert.PrivateKey.Algorithm), cmapi.UsageCertSign)
	}

	return &cmapi.Certificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmapi.SchemeGroupVersion.String(), Kind: cmapi.CertificateKind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: Labels(role)},
		Spec:       spec,
	}
}

// leafUsages are the seed's keyUsage and extendedKeyUsage for the server and
// signing certificates. Key encipherment only means something for RSA keys
// (RFC 5480, RFC 8410), so it is left off ECDSA and Ed25519 certificates.
func leafUsages(alg config.KeyAlgorithm) []cmapi.KeyUsage {
	u := []cmapi.KeyUsage{cmapi.UsageDigitalSignature}
	if alg == config.RSA {
		u = append(u, cmapi.UsageKeyEncipherment)
	}
	return append(u, cmapi.UsageContentCommitment, cmapi.UsageServerAuth, cmapi.UsageClientAuth)
}

func vaultIssuer(v *config.VaultIssuer, path string) *cmapi.VaultIssuer {
	out := &cmapi.VaultIssuer{
		Server:    v.Server,
		Path:      path,
		Namespace: v.Namespace,
	}
	if v.CABundle != "" {
		out.CABundle = []byte(v.CABundle)
	}
	a := v.Auth
	switch {
	case a.TokenSecretRef != nil:
		out.Auth.TokenSecretRef = secretKeySelector(*a.TokenSecretRef)
	case a.AppRole != nil:
		out.Auth.AppRole = &cmapi.VaultAppRole{
			Path:      a.AppRole.Path,
			RoleId:    a.AppRole.RoleID,
			SecretRef: *secretKeySelector(a.AppRole.SecretRef),
		}
	case a.Kubernetes != nil:
		k := &cmapi.VaultKubernetesAuth{Path: a.Kubernetes.MountPath, Role: a.Kubernetes.Role}
		if sa := a.Kubernetes.ServiceAccountRef; sa != nil {
			k.ServiceAccountRef = &cmapi.ServiceAccountRef{Name: sa.Name, TokenAudiences: sa.Audiences}
		}
		if s := a.Kubernetes.SecretRef; s != nil {
			k.SecretRef = *secretKeySelector(*s)
		}
		out.Auth.Kubernetes = k
	}
	return out
}

func secretKeySelector(r config.SecretKeyRef) *cmmeta.SecretKeySelector {
	return &cmmeta.SecretKeySelector{LocalObjectReference: cmmeta.LocalObjectReference{Name: r.Name}, Key: r.Key}
}

package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"time"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// cert-manager's webhook refuses shorter durations and renewal windows; it is
// better to say so here than to have the apply fail half way.
const (
	minDuration    = time.Hour
	minRenewBefore = 5 * time.Minute
	// X.509 upper bounds (RFC 5280 appendix A).
	maxCommonName   = 64
	maxOrganization = 64
)

// Validate returns every problem with a defaulted configuration, each with
// the path of the field (below fldPath) and what is wrong with it.
func Validate(c *Config, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, requiredOrUnsupported(fldPath.Child("apiVersion"), c.APIVersion, APIVersion))
	}
	if c.Kind != Kind {
		errs = append(errs, requiredOrUnsupported(fldPath.Child("kind"), c.Kind, Kind))
	}
	errs = append(errs, dns1123Label(fldPath.Child("namespace"), c.Namespace)...)
	for i, name := range c.DNSNames {
		errs = append(errs, dnsName(fldPath.Child("dnsNames").Index(i), name)...)
	}

	mode := c.Issuer.Mode()
	if mode == ModeSelfSigned {
		errs = append(errs, validateCertificate(&c.Root, fldPath.Child("root"))...)
	}
	errs = append(errs, validateCertificate(&c.Server, fldPath.Child("server"))...)
	errs = append(errs, validateCertificate(&c.Signing, fldPath.Child("signing"))...)
	if mode == ModeSelfSigned && c.Root.Duration != nil {
		// A CA issuer silently cuts a certificate short at its CA's expiry.
		for _, leaf := range []struct {
			name string
			cert *Certificate
		}{{"server", &c.Server}, {"signing", &c.Signing}} {
			if d := leaf.cert.Duration; d != nil && d.Duration > c.Root.Duration.Duration {
				errs = append(errs, field.Invalid(fldPath.Child(leaf.name, "duration"), d.Duration.String(),
					fmt.Sprintf("must not exceed root.duration (%s): cert-manager would cut the certificate short at the root's expiry", c.Root.Duration.Duration)))
			}
		}
	}

	errs = append(errs, dns1123Subdomain(fldPath.Child("trustBundle", "secretName"), c.TrustBundle.SecretName)...)
	errs = append(errs, dns1123Subdomain(fldPath.Child("identityToken", "secretName"), c.IdentityToken.SecretName)...)
	errs = append(errs, secretKey(fldPath.Child("identityToken", "key"), c.IdentityToken.Key)...)
	errs = append(errs, uniqueSecretNames(c, mode, fldPath)...)

	errs = append(errs, validateTrustSource(c, mode, fldPath.Child("trustBundle", "source"))...)
	errs = append(errs, validateSync(&c.Sync, fldPath.Child("sync"))...)
	errs = append(errs, validateRotation(&c.Rotation, fldPath.Child("rotation"))...)
	errs = append(errs, validateIssuer(&c.Issuer, fldPath.Child("issuer"))...)
	errs = append(errs, validateIstioIngress(c, fldPath.Child("istioIngress"))...)
	return errs
}

func requiredOrUnsupported(p *field.Path, got, want string) *field.Error {
	if got == "" {
		return field.Required(p, fmt.Sprintf("must be %q", want))
	}
	return field.NotSupported(p, got, []string{want})
}

func validateCertificate(c *Certificate, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, dns1123Subdomain(p.Child("secretName"), c.SecretName)...)
	switch {
	case c.CommonName == "":
		errs = append(errs, field.Required(p.Child("commonName"), ""))
	case len(c.CommonName) > maxCommonName:
		errs = append(errs, field.TooLong(p.Child("commonName"), c.CommonName, maxCommonName))
	default:
		errs = append(errs, dnsName(p.Child("commonName"), c.CommonName)...)
	}
	if len(c.Organization) > maxOrganization {
		errs = append(errs, field.TooLong(p.Child("organization"), c.Organization, maxOrganization))
	}
	errs = append(errs, validatePrivateKey(c.PrivateKey, p.Child("privateKey"))...)

	if c.Duration == nil {
		errs = append(errs, field.Required(p.Child("duration"), ""))
	} else if c.Duration.Duration < minDuration {
		errs = append(errs, field.Invalid(p.Child("duration"), c.Duration.Duration.String(), "must be at least 1h"))
	}
	if c.RenewBefore == nil {
		errs = append(errs, field.Required(p.Child("renewBefore"), ""))
	} else {
		rb := c.RenewBefore.Duration
		if rb < minRenewBefore {
			errs = append(errs, field.Invalid(p.Child("renewBefore"), rb.String(), "must be at least 5m"))
		}
		if c.Duration != nil && rb >= c.Duration.Duration {
			errs = append(errs, field.Invalid(p.Child("renewBefore"), rb.String(),
				fmt.Sprintf("must be less than duration (%s)", c.Duration.Duration)))
		}
	}
	return errs
}

// keySizes lists what cert-manager can generate for each algorithm.
var keySizes = map[KeyAlgorithm][]int{
	RSA:     {2048, 3072, 4096},
	ECDSA:   {256, 384},
	Ed25519: {0},
}

func validatePrivateKey(k PrivateKey, p *field.Path) field.ErrorList {
	sizes, ok := keySizes[k.Algorithm]
	if !ok {
		return field.ErrorList{field.NotSupported(p.Child("algorithm"), k.Algorithm, []KeyAlgorithm{RSA, ECDSA, Ed25519})}
	}
	for _, s := range sizes {
		if k.Size == s {
			return nil
		}
	}
	if k.Algorithm == Ed25519 {
		return field.ErrorList{field.Invalid(p.Child("size"), k.Size, "must be unset for Ed25519")}
	}
	return field.ErrorList{field.Invalid(p.Child("size"), k.Size, fmt.Sprintf("supported %s sizes: %v", k.Algorithm, sizes))}
}

func uniqueSecretNames(c *Config, mode Mode, p *field.Path) field.ErrorList {
	type named struct {
		path *field.Path
		name string
	}
	var all []named
	if mode == ModeSelfSigned {
		all = append(all, named{p.Child("root", "secretName"), c.Root.SecretName})
		if c.Root.SecretName != "" {
			// The second root slot, used during a key rotation.
			all = append(all, named{p.Child("root", "secretName"), c.Root.SecretName + SecondRootSuffix})
		}
	}
	all = append(all,
		named{p.Child("server", "secretName"), c.Server.SecretName},
		named{p.Child("signing", "secretName"), c.Signing.SecretName},
		named{p.Child("trustBundle", "secretName"), c.TrustBundle.SecretName},
		named{p.Child("identityToken", "secretName"), c.IdentityToken.SecretName},
	)
	var errs field.ErrorList
	seen := sets.New[string]()
	for _, n := range all {
		if n.name != "" && seen.Has(n.name) {
			errs = append(errs, field.Duplicate(n.path, n.name))
		}
		seen.Insert(n.name)
	}
	return errs
}

func validateTrustSource(c *Config, mode Mode, p *field.Path) field.ErrorList {
	src := c.TrustBundle.Source
	if src == nil {
		return nil
	}
	if mode == ModeSelfSigned {
		return field.ErrorList{field.Forbidden(p, "the self-signed root is the trust anchor; a trust source only applies with issuerRef or vault")}
	}
	switch {
	case src.SecretRef != nil && src.ConfigMapRef != nil:
		return field.ErrorList{field.Forbidden(p, "exactly one of secretRef or configMapRef may be set")}
	case src.SecretRef != nil:
		return secretKeyRef(p.Child("secretRef"), src.SecretRef)
	case src.ConfigMapRef != nil:
		return secretKeyRef(p.Child("configMapRef"), src.ConfigMapRef)
	}
	return field.ErrorList{field.Required(p, "secretRef or configMapRef")}
}

// A shorter resync would turn the backstop into load on every cluster.
const minResyncPeriod = time.Minute

func validateSync(s *Sync, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.DeletionPolicy {
	case DeletionPolicyRetain, DeletionPolicyDelete:
	default:
		errs = append(errs, field.NotSupported(p.Child("deletionPolicy"), s.DeletionPolicy, []DeletionPolicy{DeletionPolicyRetain, DeletionPolicyDelete}))
	}
	if s.ResyncPeriod != nil && s.ResyncPeriod.Duration < minResyncPeriod {
		errs = append(errs, field.Invalid(p.Child("resyncPeriod"), s.ResyncPeriod.Duration.String(), "must be at least 1m"))
	}
	return errs
}

func validateRotation(r *Rotation, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.GracePeriod != nil && r.GracePeriod.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("gracePeriod"), r.GracePeriod.Duration.String(), "must not be negative"))
	}
	if r.DistributionTimeout != nil && r.DistributionTimeout.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("distributionTimeout"), r.DistributionTimeout.Duration.String(), "must not be negative (0 waits for every cluster)"))
	}
	return errs
}

func validateIssuer(iss *Issuer, p *field.Path) field.ErrorList {
	set := 0
	for _, isSet := range []bool{iss.SelfSigned != nil, iss.IssuerRef != nil, iss.Vault != nil} {
		if isSet {
			set++
		}
	}
	if set > 1 {
		return field.ErrorList{field.Forbidden(p, "exactly one of selfSigned, issuerRef or vault may be set")}
	}
	switch {
	case iss.IssuerRef != nil:
		return validateIssuerRef(iss.IssuerRef, p.Child("issuerRef"))
	case iss.Vault != nil:
		return validateVault(iss.Vault, p.Child("vault"))
	}
	return nil
}

func validateIssuerRef(r *IssuerRef, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), "name of the issuer that signs the server and signing certificates"))
	} else {
		errs = append(errs, dns1123Subdomain(p.Child("name"), r.Name)...)
	}
	if r.Kind == "" {
		errs = append(errs, field.Required(p.Child("kind"), ""))
	}
	for _, msg := range validation.IsDNS1123Subdomain(r.Group) {
		errs = append(errs, field.Invalid(p.Child("group"), r.Group, msg))
	}
	if r.Group == "cert-manager.io" && r.Kind != "Issuer" && r.Kind != "ClusterIssuer" {
		errs = append(errs, field.NotSupported(p.Child("kind"), r.Kind, []string{"Issuer", "ClusterIssuer"}))
	}
	return errs
}

func validateVault(v *VaultIssuer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if v.Server == "" {
		errs = append(errs, field.Required(p.Child("server"), "Vault address, e.g. https://vault.example.com:8200"))
	} else if u, err := url.Parse(v.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, field.Invalid(p.Child("server"), v.Server, "must be an https:// URL with a host: the Vault token and CSRs must not cross the network in clear text"))
	}
	errs = append(errs, vaultPath(p.Child("path"), v.Path, true)...)
	errs = append(errs, vaultPath(p.Child("signingPath"), v.SigningPath, false)...)
	if v.SigningPath == "" && issuesLeavesOnly(v.Path) {
		errs = append(errs, field.Required(p.Child("signingPath"),
			fmt.Sprintf("the signing certificate is a CA, and path %q is a Vault role endpoint that only issues leaf certificates: set a <mount>/root/sign-intermediate path", v.Path)))
	}
	if v.CABundle != "" {
		if err := parseCertificates([]byte(v.CABundle)); err != nil {
			errs = append(errs, field.Invalid(p.Child("caBundle"), "<PEM>", err.Error()))
		}
	}
	return append(errs, validateVaultAuth(&v.Auth, p.Child("auth"))...)
}

func vaultPath(p *field.Path, path string, required bool) field.ErrorList {
	switch {
	case path == "" && required:
		return field.ErrorList{field.Required(p, "e.g. pki_int/sign/relay-server")}
	case path == "":
		return nil
	case strings.ContainsAny(path, " \t\n?#") || strings.Contains(path, ".."):
		return field.ErrorList{field.Invalid(p, path, "must be a Vault API path without spaces, query, fragment or '..'")}
	}
	return nil
}

// issuesLeavesOnly reports whether a Vault PKI path is a role endpoint
// (sign/<role> or issue/<role>), which ignores a request for a CA certificate.
func issuesLeavesOnly(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := 0; i < len(parts)-1; i++ {
		if parts[i] == "sign" || parts[i] == "issue" {
			return true
		}
	}
	return false
}

func validateVaultAuth(a *VaultAuth, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	set := 0
	if a.TokenSecretRef != nil {
		set++
		errs = append(errs, secretKeyRef(p.Child("tokenSecretRef"), a.TokenSecretRef)...)
	}
	if r := a.AppRole; r != nil {
		set++
		ap := p.Child("appRole")
		if r.Path == "" {
			errs = append(errs, field.Required(ap.Child("path"), "mount path of the AppRole auth method, e.g. approle"))
		}
		if r.RoleID == "" {
			errs = append(errs, field.Required(ap.Child("roleId"), ""))
		}
		errs = append(errs, secretKeyRef(ap.Child("secretRef"), &r.SecretRef)...)
	}
	if k := a.Kubernetes; k != nil {
		set++
		kp := p.Child("kubernetes")
		if k.Role == "" {
			errs = append(errs, field.Required(kp.Child("role"), "Vault role bound to the service account"))
		}
		switch {
		case k.ServiceAccountRef != nil && k.SecretRef != nil:
			errs = append(errs, field.Forbidden(kp, "exactly one of serviceAccountRef or secretRef may be set"))
		case k.ServiceAccountRef != nil:
			errs = append(errs, dns1123Subdomain(kp.Child("serviceAccountRef", "name"), k.ServiceAccountRef.Name)...)
		case k.SecretRef != nil:
			errs = append(errs, secretKeyRef(kp.Child("secretRef"), k.SecretRef)...)
		default:
			errs = append(errs, field.Required(kp.Child("serviceAccountRef"), "or secretRef"))
		}
	}
	switch {
	case set == 0:
		errs = append(errs, field.Required(p, "one of tokenSecretRef, appRole or kubernetes"))
	case set > 1:
		errs = append(errs, field.Forbidden(p, "exactly one of tokenSecretRef, appRole or kubernetes may be set"))
	}
	return errs
}

func validateIstioIngress(c *Config, p *field.Path) field.ErrorList {
	in := &c.IstioIngress
	if !in.Enabled {
		return nil
	}
	var errs field.ErrorList
	errs = append(errs, dns1123Subdomain(p.Child("name"), in.Name)...)
	errs = append(errs, dns1123Label(p.Child("namespace"), in.Namespace)...)
	if errs2 := dnsName(p.Child("host"), in.Host); len(errs2) > 0 {
		errs = append(errs, errs2...)
	} else if !Covers(c.ServerDNSNames(), in.Host) {
		errs = append(errs, field.Invalid(p.Child("host"), in.Host,
			fmt.Sprintf("not covered by the server certificate's DNS names %v: add it to dnsNames", c.ServerDNSNames())))
	}
	errs = append(errs, dnsName(p.Child("destinationHost"), in.DestinationHost)...)
	for _, port := range []struct {
		name string
		n    int32
	}{{"port", in.Port}, {"targetPort", in.TargetPort}} {
		for _, msg := range validation.IsValidPortNum(int(port.n)) {
			errs = append(errs, field.Invalid(p.Child(port.name), port.n, msg))
		}
	}
	if len(in.GatewaySelector) == 0 {
		errs = append(errs, field.Required(p.Child("gatewaySelector"), "labels of the ingress gateway pods, e.g. istio: ingressgateway"))
	}
	return append(errs, metav1validation.ValidateLabels(in.GatewaySelector, p.Child("gatewaySelector"))...)
}

// ServerDNSNames is the server certificate's subject alternative names: its
// common name first, as in the seed, then the extra names.
func (c *Config) ServerDNSNames() []string {
	names := []string{c.Server.CommonName}
	for _, n := range c.DNSNames {
		if n != c.Server.CommonName {
			names = append(names, n)
		}
	}
	return names
}

// Covers reports whether a certificate with these DNS names is valid for host,
// with the single-label wildcard rule of RFC 6125 that TLS clients apply.
func Covers(names []string, host string) bool {
	host = strings.ToLower(host)
	for _, n := range names {
		n = strings.ToLower(n)
		if n == host {
			return true
		}
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && rest == suffix {
				return true
			}
		}
	}
	return false
}

func parseCertificates(data []byte) error {
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n+1, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate found")
	}
	return nil
}

func secretKeyRef(p *field.Path, r *SecretKeyRef) field.ErrorList {
	errs := dns1123Subdomain(p.Child("name"), r.Name)
	return append(errs, secretKey(p.Child("key"), r.Key)...)
}

func dns1123Label(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

func dns1123Subdomain(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

// dnsName accepts a DNS name or a single leading-label wildcard.
func dnsName(p *field.Path, v string) field.ErrorList {
	var msgs []string
	if strings.HasPrefix(v, "*.") {
		msgs = validation.IsWildcardDNS1123Subdomain(v)
	} else {
		msgs = validation.IsDNS1123Subdomain(v)
	}
	var errs field.ErrorList
	for _, msg := range msgs {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

func secretKey(p *field.Path, v string) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsConfigMapKey(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

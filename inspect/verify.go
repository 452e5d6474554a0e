package inspect

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/issuer"
)

// Severity of a finding.
type Severity string

const (
	OK      Severity = "OK"
	Warning Severity = "WARNING"
	Error   Severity = "ERROR"
)

// Finding is one line of `relay-pki verify`.
type Finding struct {
	Severity Severity `json:"severity"`
	// Cluster is "management" or a registered cluster's name.
	Cluster string `json:"cluster"`
	// Object is namespace/name of the Secret (or Certificate) checked.
	Object  string `json:"object"`
	Message string `json:"message"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%-7s %s %s: %s", f.Severity, f.Cluster, f.Object, f.Message)
}

// Thresholds for days to expiry.
type Thresholds struct {
	WarnDays, ErrorDays int
	// RelayHosts must each be covered by the server certificate's SANs.
	RelayHosts []string
}

// ManagementCluster names the management cluster in findings.
const ManagementCluster = "management"

// Verify checks every secret of the seed in the management cluster and in
// each workload cluster: chains, the seed's certificate properties, that
// workload clusters hold the management bundle and token, that no private
// key is outside the management cluster, and days to expiry.
func Verify(s *Snapshot, t Thresholds) []Finding {
	v := &verifier{s: s, t: t, now: s.Taken}
	v.management()
	for _, cl := range s.Clusters {
		v.cluster(cl)
	}
	return v.findings
}

type verifier struct {
	s        *Snapshot
	t        Thresholds
	now      time.Time
	findings []Finding
	roots    []*x509.Certificate
}

func (v *verifier) add(sev Severity, cluster, object, format string, args ...any) {
	v.findings = append(v.findings, Finding{Severity: sev, Cluster: cluster, Object: object, Message: fmt.Sprintf(format, args...)})
}

func (v *verifier) obj(ns, name string) string { return ns + "/" + name }

func (v *verifier) management() {
	cfg := v.s.Config
	ns := cfg.Namespace
	m := ManagementCluster

	// The bundle every cluster trusts.
	bundleName := v.obj(ns, cfg.TrustBundle.SecretName)
	switch sec := v.s.Management[cfg.TrustBundle.SecretName]; {
	case sec == nil:
		v.add(Error, m, bundleName, "missing: no trust bundle is published (is relay-pki controller running?)")
	default:
		v.noPrivateKey(m, bundleName, sec)
		roots, err := certinfo.ParsePEM(sec.Data["ca.crt"])
		if err != nil {
			v.add(Error, m, bundleName, "ca.crt does not parse: %v", err)
			break
		}
		v.roots = roots
		for _, r := range roots {
			if !r.IsCA {
				v.add(Error, m, bundleName, "%s is not a CA certificate", r.Subject)
			}
			if !bytes.Equal(r.RawIssuer, r.RawSubject) || r.CheckSignatureFrom(r) != nil {
				v.add(Warning, m, bundleName, "%s is not self-signed: an intermediate is used as a trust anchor", r.Subject)
			}
			if r.MaxPathLenZero {
				v.add(Error, m, bundleName, "%s has pathLen 0: agent certificates issued by the signing CA (an intermediate) cannot chain to it", r.Subject)
			}
			v.expiry(m, bundleName, r)
		}
		v.add(OK, m, bundleName, "%d trust anchor(s), sha256 %s", len(roots), short(digest(sec.Data["ca.crt"])))
	}

	// The server certificate: serverAuth and clientAuth, SANs.
	serverName := v.obj(ns, cfg.Server.SecretName)
	if leaf := v.leaf(m, serverName, v.s.Management[cfg.Server.SecretName], true); leaf != nil {
		for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if !slices.Contains(leaf.ExtKeyUsage, eku) {
				v.add(Error, m, serverName, "extended key usage %s is missing (the seed requires serverAuth and clientAuth)", ekuName(eku))
			}
		}
		if leaf.IsCA {
			v.add(Error, m, serverName, "is a CA certificate; the relay server certificate must be a leaf")
		}
		if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			v.add(Error, m, serverName, "key usage digitalSignature is missing")
		}
		hosts := append([]string{cfg.Server.CommonName}, cfg.DNSNames...)
		hosts = append(hosts, v.t.RelayHosts...)
		for _, h := range hosts {
			if err := leaf.VerifyHostname(strings.Replace(h, "*", "relay", 1)); err != nil {
				v.add(Error, m, serverName, "SANs %v do not cover the relay host %q", leaf.DNSNames, h)
			}
		}
		if sec := v.s.Management[cfg.Server.SecretName]; sec != nil && v.roots != nil {
			if cas, err := certinfo.ParsePEM(sec.Data["ca.crt"]); err != nil {
				v.add(Error, m, serverName, "ca.crt does not parse: %v", err)
			} else if !anyIn(cas, v.roots) {
				v.add(Warning, m, serverName, "ca.crt holds no certificate of the distributed trust bundle")
			}
		}
	}

	// The signing CA: CA:TRUE, keyCertSign, and able to issue agent certs.
	signingName := v.obj(ns, cfg.Signing.SecretName)
	if leaf := v.leaf(m, signingName, v.s.Management[cfg.Signing.SecretName], true); leaf != nil {
		if !leaf.IsCA || !leaf.BasicConstraintsValid {
			v.add(Error, m, signingName, "is not a CA certificate (CA:TRUE required to issue agent certificates)")
		}
		if leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
			v.add(Error, m, signingName, "key usage keyCertSign is missing")
		}
	}

	if cfg.Issuer.Mode() == "selfSigned" {
		for _, slot := range v.s.Roots.Slots {
			secret := issuer.RootSlot(cfg, slot).Secret
			rootName := v.obj(ns, secret)
			if leaf := v.leaf(m, rootName, v.s.Management[secret], true); leaf != nil && !leaf.IsCA {
				v.add(Error, m, rootName, "the relay root is not a CA certificate")
			}
		}
	}

	tokenName := v.obj(ns, cfg.IdentityToken.SecretName)
	switch sec := v.s.Management[cfg.IdentityToken.SecretName]; {
	case sec == nil:
		v.add(Error, m, tokenName, "missing: agents cannot register without the identity token")
	case len(sec.Data[cfg.IdentityToken.Key]) == 0:
		v.add(Error, m, tokenName, "key %q is missing or empty", cfg.IdentityToken.Key)
	default:
		v.noPrivateKey(m, tokenName, sec)
		v.add(OK, m, tokenName, "token present (sha256 %s)", short(digest(sec.Data[cfg.IdentityToken.Key])))
	}
}

// leaf checks a cert-manager secret: tls.crt parses, matches tls.key when
// withKey, chains to the bundle and is not about to expire.
func (v *verifier) leaf(cluster, name string, sec *corev1.Secret, withKey bool) *x509.Certificate {
	if sec == nil {
		v.add(Error, cluster, name, "missing")
		return nil
	}
	chain, err := certinfo.ParsePEM(sec.Data["tls.crt"])
	if err != nil {
		v.add(Error, cluster, name, "tls.crt does not parse: %v", err)
		return nil
	}
	leaf := chain[0]
	if withKey {
		if _, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"]); err != nil {
			v.add(Error, cluster, name, "tls.key does not match tls.crt or is missing: %v", keyPairError(err))
		}
	}
	problems := len(v.findings)
	if v.roots != nil {
		if _, err := certinfo.VerifyChain(sec.Data["tls.crt"], v.roots, v.now); err != nil {
			v.add(Error, cluster, name, "%v", err)
		}
	}
	v.expiry(cluster, name, leaf)
	if len(v.findings) == problems {
		v.add(OK, cluster, name, "%s chains to the trust bundle, expires %s (%d days)", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly), daysLeft(leaf, v.now))
	}
	return leaf
}

func (v *verifier) expiry(cluster, name string, c *x509.Certificate) {
	days := daysLeft(c, v.now)
	switch {
	case days < 0:
		v.add(Error, cluster, name, "%s expired on %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	case days < v.t.ErrorDays:
		v.add(Error, cluster, name, "%s expires in %d days (error threshold %d)", c.Subject, days, v.t.ErrorDays)
	case days < v.t.WarnDays:
		v.add(Warning, cluster, name, "%s expires in %d days (warning threshold %d)", c.Subject, days, v.t.WarnDays)
	}
}

func daysLeft(c *x509.Certificate, now time.Time) int {
	return int(c.NotAfter.Sub(now).Hours() / 24)
}

// noPrivateKey flags any key that looks like key material in a secret that
// must hold none.
func (v *verifier) noPrivateKey(cluster, name string, sec *corev1.Secret) {
	for k, val := range sec.Data {
		if strings.HasSuffix(k, ".key") || bytes.Contains(val, []byte("PRIVATE KEY")) {
			v.add(Error, cluster, name, "key %q holds private key material: no private key may leave the management cluster's cert-manager secrets", k)
		}
	}
}

func (v *verifier) cluster(cl Cluster) {
	cfg := v.s.Config
	if cl.Err != nil {
		v.add(Error, cl.Name, cl.Namespace, "cannot read the cluster with its registration's credentials: %v", cl.Err)
		return
	}
	bundleName := v.obj(cl.Namespace, cfg.TrustBundle.SecretName)
	want := digest(v.s.Bundle())
	switch sec := cl.Secrets[cfg.TrustBundle.SecretName]; {
	case sec == nil:
		v.add(Error, cl.Name, bundleName, "missing: agents here cannot verify the relay server")
	default:
		v.noPrivateKey(cl.Name, bundleName, sec)
		v.onlyKeys(cl.Name, bundleName, sec, "ca.crt")
		got := digest(sec.Data["ca.crt"])
		if got != want {
			v.add(Error, cl.Name, bundleName, "ca.crt (sha256 %s) differs from the management bundle (sha256 %s)", short(got), short(want))
		} else {
			v.add(OK, cl.Name, bundleName, "ca.crt equals the management bundle")
		}
		if certs, err := certinfo.ParsePEM(sec.Data["ca.crt"]); err == nil {
			for _, c := range certs {
				v.expiry(cl.Name, bundleName, c)
			}
		}
	}
	tokenName := v.obj(cl.Namespace, cfg.IdentityToken.SecretName)
	switch sec := cl.Secrets[cfg.IdentityToken.SecretName]; {
	case sec == nil:
		v.add(Error, cl.Name, tokenName, "missing: agents here cannot register")
	default:
		v.noPrivateKey(cl.Name, tokenName, sec)
		v.onlyKeys(cl.Name, tokenName, sec, cfg.IdentityToken.Key)
		if digest(sec.Data[cfg.IdentityToken.Key]) != digest(v.s.Token()) {
			v.add(Error, cl.Name, tokenName, "token differs from the management cluster's")
		} else {
			v.add(OK, cl.Name, tokenName, "token equals the management cluster's")
		}
	}
}

func (v *verifier) onlyKeys(cluster, name string, sec *corev1.Secret, allowed string) {
	var extra []string
	for k := range sec.Data {
		if k != allowed {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		v.add(Warning, cluster, name, "unexpected keys %v besides %q", extra, allowed)
	}
}

func anyIn(certs, roots []*x509.Certificate) bool {
	for _, c := range certs {
		for _, r := range roots {
			if c.Equal(r) {
				return true
			}
		}
	}
	return false
}

func ekuName(e x509.ExtKeyUsage) string {
	switch e {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	}
	return fmt.Sprint(int(e))
}

// keyPairError keeps crypto/tls's reason and drops anything else: the
// standard library never echoes key bytes, but be sure.
func keyPairError(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "PRIVATE") && strings.Contains(msg, "-----") {
		return "invalid key pair"
	}
	return msg
}

// Errors counts ERROR findings.
func Errors(fs []Finding) (errs, warnings int) {
	for _, f := range fs {
		switch f.Severity {
		case Error:
			errs++
		case Warning:
			warnings++
		}
	}
	return errs, warnings
}

// WriteFindings prints one line per finding; with problemsOnly, OK lines are
// left out.
func WriteFindings(out io.Writer, fs []Finding, problemsOnly bool) {
	for _, f := range fs {
		if problemsOnly && f.Severity == OK {
			continue
		}
		fmt.Fprintln(out, f)
	}
	errs, warns := Errors(fs)
	fmt.Fprintf(out, "%d error(s), %d warning(s), %d check(s) passed\n", errs, warns, len(fs)-errs-warns)
}

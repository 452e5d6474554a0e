package inspect

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/certstatus"
	relaysync "github.com/relay-pki/relay-pki/sync"
)

// Status is `relay-pki status`: healthy only when every certificate is Ready
// and chains to the distributed bundle, and every cluster is Synced and
// holds exactly the management bundle and token.
type Status struct {
	Healthy      bool                `json:"healthy"`
	Certificates []CertificateStatus `json:"certificates"`
	Clusters     []ClusterStatus     `json:"clusters"`
	Issuers      []IssuerStatus      `json:"issuers"`
	Rotation     RotationStatus      `json:"rotation"`
	// Problems say why Healthy is false, one per line.
	Problems []string `json:"problems,omitempty"`
}

// CertificateStatus is one row of the certificate table.
type CertificateStatus struct {
	Name        string     `json:"name"`
	Secret      string     `json:"secret"`
	Ready       bool       `json:"ready"`
	NotAfter    *time.Time `json:"notAfter,omitempty"`
	RenewalTime *time.Time `json:"renewalTime,omitempty"`
	Issuer      string     `json:"issuer"`
	ChainOK     bool       `json:"chainOK"`
	ChainError  string     `json:"chainError,omitempty"`
	// LastFailure is cert-manager's account of a failed issuance (a
	// renewal the issuer refused); the current certificate stays.
	LastFailure string `json:"lastFailure,omitempty"`
}

// IssuerStatus is one of relay-pki's Issuers.
type IssuerStatus struct {
	Name    string `json:"name"`
	Ready   bool   `json:"ready"`
	Message string `json:"message,omitempty"`
}

// RotationStatus is where a root rotation stands.
type RotationStatus struct {
	Phase      string   `json:"phase"`
	ActiveSlot int      `json:"activeSlot"`
	Since      string   `json:"since,omitempty"`
	GraceUntil string   `json:"graceUntil,omitempty"`
	WaitingFor []string `json:"waitingFor,omitempty"`
	Message    string   `json:"message,omitempty"`
}

// ClusterStatus is one row of the cluster table.
type ClusterStatus struct {
	Name         string `json:"name"`
	Namespace    string `json:"namespace"`
	State        string `json:"state"`
	CAMatches    bool   `json:"caMatches"`
	TokenMatches bool   `json:"tokenMatches"`
	LastSync     string `json:"lastSync,omitempty"`
	Message      string `json:"message,omitempty"`
	Error        string `json:"error,omitempty"`
}

// StatusOf judges a snapshot.
func StatusOf(s *Snapshot) Status {
	st := Status{Certificates: []CertificateStatus{}, Clusters: []ClusterStatus{}}
	r := s.Rotation
	st.Rotation = RotationStatus{Phase: string(r.Phase), ActiveSlot: int(r.Active), WaitingFor: r.WaitingFor, Message: r.Message}
	if st.Rotation.Phase == "" {
		st.Rotation.Phase = "Idle"
	}
	if !r.PhaseSince.IsZero() {
		st.Rotation.Since = r.PhaseSince.UTC().Format(time.RFC3339)
	}
	if !r.GraceUntil.IsZero() {
		st.Rotation.GraceUntil = r.GraceUntil.UTC().Format(time.RFC3339)
	}
	roots, bundleErr := certinfo.ParsePEM(s.Bundle())
	if s.Bundle() == nil {
		st.Problems = append(st.Problems, fmt.Sprintf("trust bundle %s/%s is missing", s.Config.Namespace, s.Config.TrustBundle.SecretName))
	} else if bundleErr != nil {
		st.Problems = append(st.Problems, fmt.Sprintf("trust bundle %s/%s does not parse: %v", s.Config.Namespace, s.Config.TrustBundle.SecretName, bundleErr))
	}
	if len(s.Token()) == 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("identity token %s/%s is missing", s.Config.Namespace, s.Config.IdentityToken.SecretName))
	}
	for _, name := range s.Missing {
		st.Problems = append(st.Problems, fmt.Sprintf("Certificate %s/%s does not exist (run relay-pki install)", s.Config.Namespace, name))
	}
	for _, crt := range s.Certificates {
		cs := CertificateStatus{
			Name: crt.Name, Secret: crt.Spec.SecretName, Ready: certstatus.Ready(&crt),
			Issuer: orDefault(crt.Spec.IssuerRef.Kind, "Issuer") + "/" + crt.Spec.IssuerRef.Name,
		}
		if t := crt.Status.NotAfter; t != nil {
			cs.NotAfter = new(t.UTC())
		}
		if t := crt.Status.RenewalTime; t != nil {
			cs.RenewalTime = new(t.UTC())
		}
		switch sec := s.Management[crt.Spec.SecretName]; {
		case sec == nil:
			cs.ChainError = "secret missing"
		case bundleErr != nil:
			cs.ChainError = "no valid trust bundle"
		default:
			if _, err := certinfo.VerifyChain(sec.Data["tls.crt"], roots, s.Taken); err != nil {
				cs.ChainError = err.Error()
			} else {
				cs.ChainOK = true
			}
		}
		if !cs.Ready {
			phase, reason := certstatus.Phase(&crt)
			st.Problems = append(st.Problems, fmt.Sprintf("Certificate %s is not Ready: %s %s", crt.Name, phase, reason))
		}
		if rt := crt.Status.RenewalTime; rt != nil && s.Taken.After(rt.Add(relaysync.OverdueAfter)) {
			st.Problems = append(st.Problems, fmt.Sprintf("Certificate %s: renewal overdue since %s (is cert-manager's controller running?); the current certificate is valid until %s",
				crt.Name, rt.UTC().Format(time.RFC3339), timeOrDash(cs.NotAfter)))
		}
		if t := crt.Status.LastFailureTime; t != nil {
			msg := ""
			if c := certstatus.Condition(&crt, cmapi.CertificateConditionIssuing); c != nil {
				msg = ": " + oneLine(c.Message)
			}
			attempts := 0
			if n := crt.Status.FailedIssuanceAttempts; n != nil {
				attempts = *n
			}
			cs.LastFailure = fmt.Sprintf("issuance failed at %s (attempt %d)%s", t.UTC().Format(time.RFC3339), attempts, msg)
			st.Problems = append(st.Problems, fmt.Sprintf("Certificate %s: %s; the current certificate stays in place", crt.Name, cs.LastFailure))
		}
		if !cs.ChainOK {
			st.Problems = append(st.Problems, fmt.Sprintf("Certificate %s: %s", crt.Name, cs.ChainError))
		}
		st.Certificates = append(st.Certificates, cs)
	}

	st.Issuers = []IssuerStatus{}
	for _, iss := range s.Issuers {
		is := IssuerStatus{Name: iss.Name}
		for _, c := range iss.Status.Conditions {
			if c.Type == cmapi.IssuerConditionReady {
				is.Ready = c.Status == cmmeta.ConditionTrue && c.ObservedGeneration == iss.Generation
				is.Message = oneLine(c.Message)
			}
		}
		if !is.Ready {
			st.Problems = append(st.Problems, fmt.Sprintf("Issuer %s is not Ready: %s", iss.Name, orDefault(is.Message, "no status yet")))
		}
		st.Issuers = append(st.Issuers, is)
	}

	bundle, token := digest(s.Bundle()), digest(s.Token())
	for _, cl := range s.Clusters {
		cs := ClusterStatus{Name: cl.Name, Namespace: cl.Namespace, State: orDefault(cl.State, "Unknown"), LastSync: cl.SyncedAt, Message: cl.Message}
		if cl.Err != nil {
			cs.Error = cl.Err.Error()
			st.Problems = append(st.Problems, fmt.Sprintf("cluster %s: cannot read it: %v", cl.Name, cl.Err))
		} else {
			if sec := cl.Secrets[s.Config.TrustBundle.SecretName]; sec != nil {
				cs.CAMatches = bundle != "" && digest(sec.Data["ca.crt"]) == bundle
			}
			if sec := cl.Secrets[s.Config.IdentityToken.SecretName]; sec != nil {
				cs.TokenMatches = token != "" && digest(sec.Data[s.Config.IdentityToken.Key]) == token
			}
			if !cs.CAMatches {
				st.Problems = append(st.Problems, fmt.Sprintf("cluster %s: %s/%s ca.crt does not equal the management bundle", cl.Name, cl.Namespace, s.Config.TrustBundle.SecretName))
			}
			if !cs.TokenMatches {
				st.Problems = append(st.Problems, fmt.Sprintf("cluster %s: %s/%s does not hold the management token", cl.Name, cl.Namespace, s.Config.IdentityToken.SecretName))
			}
		}
		if cs.State != string(relaysync.StateSynced) {
			st.Problems = append(st.Problems, fmt.Sprintf("cluster %s is %s: %s", cl.Name, cs.State, cl.Message))
		}
		st.Clusters = append(st.Clusters, cs)
	}
	st.Healthy = len(st.Problems) == 0
	return st
}

// WriteTable prints the two tables and the problems.
func (st Status) WriteTable(out io.Writer) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tREADY\tNOT AFTER\tRENEWAL\tISSUER\tCHAIN")
	for _, c := range st.Certificates {
		chain := "OK"
		if !c.ChainOK {
			chain = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%t\t%s\t%s\t%s\t%s\n", c.Name, c.Ready, timeOrDash(c.NotAfter), timeOrDash(c.RenewalTime), c.Issuer, chain)
	}
	if len(st.Issuers) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "ISSUER\tREADY\tMESSAGE")
		for _, is := range st.Issuers {
			fmt.Fprintf(tw, "%s\t%t\t%s\n", is.Name, is.Ready, is.Message)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CLUSTER\tSTATE\tNAMESPACE\tCA.CRT\tTOKEN\tLAST SYNC")
	for _, c := range st.Clusters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.State, c.Namespace, match(c.CAMatches, c.Error), match(c.TokenMatches, c.Error), orDefault(c.LastSync, "-"))
	}
	if len(st.Clusters) == 0 {
		fmt.Fprintln(tw, "(no registered clusters)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := out.Write(b.Bytes()); err != nil {
		return err
	}
	rot := st.Rotation
	line := fmt.Sprintf("\nroot rotation: %s (active root slot %d)", rot.Phase, rot.ActiveSlot)
	if rot.Since != "" && rot.Phase != "Idle" {
		line += " since " + rot.Since
	}
	if rot.GraceUntil != "" && rot.Phase == "Grace" {
		line += ", old root trusted until " + rot.GraceUntil
	}
	if rot.Message != "" {
		line += ": " + rot.Message
	}
	if _, err := fmt.Fprintln(out, line); err != nil {
		return err
	}
	if st.Healthy {
		_, err := fmt.Fprintln(out, "\nhealthy")
		return err
	}
	fmt.Fprintf(out, "\nunhealthy: %d problem(s)\n", len(st.Problems))
	for _, p := range st.Problems {
		fmt.Fprintln(out, "  -", p)
	}
	return nil
}

func match(ok bool, err string) string {
	switch {
	case err != "":
		return "unknown"
	case ok:
		return "matches"
	default:
		return "DIFFERS"
	}
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// oneLine folds a multi-line condition message (Vault's errors are) into
// one line for the table.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

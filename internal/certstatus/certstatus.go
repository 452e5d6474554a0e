// Package certstatus reads cert-manager's view of a Certificate: whether it
// is Ready for its current spec, and, when it is not, the conditions of the
// Certificate and its CertificateRequests, which is where cert-manager
// explains itself. install, status and the e2e tests share it.
package certstatus

import (
	"context"
	"fmt"
	"sort"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Ready reports whether cert-manager has issued the certificate's current
// generation: a Ready condition left over from an older spec does not count.
func Ready(crt *cmapi.Certificate) bool {
	c := Condition(crt, cmapi.CertificateConditionReady)
	return c != nil && c.Status == cmmeta.ConditionTrue && c.ObservedGeneration == crt.Generation
}

// Condition returns the condition of type t, or nil.
func Condition(crt *cmapi.Certificate, t cmapi.CertificateConditionType) *cmapi.CertificateCondition {
	for i := range crt.Status.Conditions {
		if crt.Status.Conditions[i].Type == t {
			return &crt.Status.Conditions[i]
		}
	}
	return nil
}

// Phase is a one-word summary of where a certificate stands, with the reason
// cert-manager gives: Ready, Issuing, NotReady or Pending (no status yet).
func Phase(crt *cmapi.Certificate) (phase, reason string) {
	if Ready(crt) {
		return "Ready", ""
	}
	if c := Condition(crt, cmapi.CertificateConditionIssuing); c != nil && c.Status == cmmeta.ConditionTrue {
		return "Issuing", c.Reason
	}
	if c := Condition(crt, cmapi.CertificateConditionReady); c != nil {
		return "NotReady", c.Reason
	}
	return "Pending", ""
}

// Describe prints a certificate's conditions and those of its
// CertificateRequests, oldest first.
func Describe(ctx context.Context, c client.Reader, ns, name string) string {
	var b strings.Builder
	var crt cmapi.Certificate
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &crt); err != nil {
		return fmt.Sprintf("Certificate %s/%s: %v", ns, name, err)
	}
	fmt.Fprintf(&b, "Certificate %s/%s (generation %d):\n", ns, name, crt.Generation)
	if len(crt.Status.Conditions) == 0 {
		b.WriteString("  no conditions: cert-manager's controller has not seen it (is it running?)\n")
	}
	for _, cond := range crt.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s reason=%s observedGeneration=%d: %s\n", cond.Type, cond.Status, cond.Reason, cond.ObservedGeneration, cond.Message)
	}
	var crs cmapi.CertificateRequestList
	if err := c.List(ctx, &crs, client.InNamespace(ns)); err == nil {
		sort.Slice(crs.Items, func(i, j int) bool {
			return crs.Items[i].CreationTimestamp.Before(&crs.Items[j].CreationTimestamp)
		})
		for _, cr := range crs.Items {
			if cr.Annotations[cmapi.CertificateNameKey] != name {
				continue
			}
			fmt.Fprintf(&b, "  CertificateRequest %s:\n", cr.Name)
			for _, cond := range cr.Status.Conditions {
				fmt.Fprintf(&b, "    %s=%s reason=%s: %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
			}
		}
	}
	return b.String()
}

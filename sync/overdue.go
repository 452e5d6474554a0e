package sync

import (
	"context"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/relay-pki/relay-pki/issuer"
)

// OverdueAfter is how long past its renewal time a certificate may go
// unrenewed before relay-pki calls it overdue: cert-manager renews within
// seconds, so longer means its controller is down or the issuer refuses.
const OverdueAfter = 30 * time.Second

// checkRenewals reports every relay certificate whose renewal is overdue
// (Event RenewalOverdue once per renewal time, metric) and returns when to
// look again: the next renewal time that could fall overdue.
func (r *SourceReconciler) checkRenewals(ctx context.Context) time.Duration {
	var list cmapi.CertificateList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Config.Namespace), client.MatchingLabels{issuer.ManagedByLabel: issuer.ManagedBy}); err != nil {
		return 0
	}
	now := r.Clock.Now()
	var next time.Duration
	for i := range list.Items {
		crt := &list.Items[i]
		role := crt.Labels[issuer.RoleLabel]
		rt := crt.Status.RenewalTime
		if rt == nil {
			continue
		}
		due := rt.Add(OverdueAfter)
		if now.Before(due) {
			r.Metrics.renewalOverdue.WithLabelValues(crt.Name, role).Set(0)
			if d := due.Sub(now); next == 0 || d < next {
				next = d
			}
			continue
		}
		r.Metrics.renewalOverdue.WithLabelValues(crt.Name, role).Set(1)
		key := crt.Name + "@" + rt.UTC().Format(time.RFC3339)
		r.mu.Lock()
		seen := r.overdueReported[key]
		if r.overdueReported == nil {
			r.overdueReported = map[string]bool{}
		}
		r.overdueReported[key] = true
		r.mu.Unlock()
		if !seen {
			msg := fmt.Sprintf("renewal was due at %s and has not happened (%s ago): is cert-manager's controller running, and is the issuer Ready? The current certificate is valid until %s",
				rt.UTC().Format(time.RFC3339), now.Sub(rt.Time).Round(time.Second), notAfter(crt))
			logf.FromContext(ctx).Info("renewal overdue", "certificate", client.ObjectKeyFromObject(crt), "renewalTime", rt.UTC())
			r.Recorder.Event(crt, corev1.EventTypeWarning, "RenewalOverdue", msg)
		}
		// Look again soon: the renewal may still happen, or not.
		if next == 0 || OverdueAfter < next {
			next = OverdueAfter
		}
	}
	return next
}

func notAfter(crt *cmapi.Certificate) string {
	if crt.Status.NotAfter == nil {
		return "unknown"
	}
	return crt.Status.NotAfter.UTC().Format(time.RFC3339)
}

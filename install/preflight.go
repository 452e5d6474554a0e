// Package install puts the relay PKI into a management cluster: it checks
// that cert-manager can serve it, server-side applies the rendered objects
// and waits, reporting each certificate's progress, until all are Ready.
package install

import (
	"context"
	"fmt"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// certManagerResources must all be served for the relay PKI to work.
var certManagerResources = []string{"certificates", "certificaterequests", "issuers", "clusterissuers"}

// CertManagerLease is the Lease cert-manager's controller holds while it
// runs (its --leader-election-namespace defaults to kube-system).
const CertManagerLease = "cert-manager-controller"

// howToInstall ends every "cert-manager is missing" error.
const howToInstall = "install cert-manager first (https://cert-manager.io/docs/installation/), e.g. " +
	"helm install cert-manager oci://quay.io/jetstack/charts/cert-manager --namespace cert-manager --create-namespace --set crds.enabled=true"

// PreflightError says what of cert-manager is missing.
type PreflightError struct{ Reason string }

func (e *PreflightError) Error() string { return e.Reason }

// Preflight checks that cert-manager's API is served and that its controller
// is alive, by the freshness of the Lease it renews. A caller that may not
// read Leases gets a warning instead of a failure: the wait for Ready will
// tell.
func Preflight(ctx context.Context, disc discovery.DiscoveryInterface, c client.Reader, leaseNamespace string, now time.Time) (warnings []string, err error) {
	list, err := disc.ServerResourcesForGroupVersion("cert-manager.io/v1")
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &PreflightError{Reason: "cert-manager is not installed in this cluster: the API cert-manager.io/v1 (CRDs certificates.cert-manager.io, issuers.cert-manager.io, clusterissuers.cert-manager.io, certificaterequests.cert-manager.io) is not served; " + howToInstall}
		}
		return nil, fmt.Errorf("discover cert-manager's API: %w", err)
	}
	var served []string
	for _, r := range list.APIResources {
		served = append(served, r.Name)
	}
	for _, want := range certManagerResources {
		if !slices.Contains(served, want) {
			return nil, &PreflightError{Reason: fmt.Sprintf("cert-manager is incomplete: the CRD %s.cert-manager.io is missing; %s", want, howToInstall)}
		}
	}

	var lease coordinationv1.Lease
	err = c.Get(ctx, client.ObjectKey{Namespace: leaseNamespace, Name: CertManagerLease}, &lease)
	switch {
	case apierrors.IsForbidden(err):
		return []string{fmt.Sprintf("cannot read Lease %s/%s to check that cert-manager's controller runs (forbidden); continuing", leaseNamespace, CertManagerLease)}, nil
	case apierrors.IsNotFound(err):
		return nil, &PreflightError{Reason: fmt.Sprintf("cert-manager's controller is not running: its Lease %s/%s does not exist (if cert-manager elects its leader in another namespace, pass --cert-manager-namespace); %s", leaseNamespace, CertManagerLease, howToInstall)}
	case err != nil:
		return nil, fmt.Errorf("read Lease %s/%s: %w", leaseNamespace, CertManagerLease, err)
	}
	if lease.Spec.RenewTime != nil {
		d := 60 * time.Second
		if lease.Spec.LeaseDurationSeconds != nil {
			d = time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
		}
		if age := now.Sub(lease.Spec.RenewTime.Time); age > 2*d {
			return nil, &PreflightError{Reason: fmt.Sprintf("cert-manager's controller is not running: its Lease %s/%s was last renewed %s ago (lease duration %s); check the cert-manager Deployment", leaseNamespace, CertManagerLease, age.Round(time.Second), d)}
		}
	}
	return nil, nil
}

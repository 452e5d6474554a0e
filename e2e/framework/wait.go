package framework

import (
	"context"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/internal/certstatus"
)

// CertificateReady reports whether cert-manager has issued the certificate's
// current generation.
func CertificateReady(crt *cmapi.Certificate) bool { return certstatus.Ready(crt) }

// WaitForCertificates waits until every named Certificate in ns is Ready.
// onReady, if not nil, is called once per certificate as it becomes ready.
// On timeout the error shows each unready certificate's conditions and
// those of its newest CertificateRequest, which is where cert-manager
// explains itself.
func WaitForCertificates(ctx context.Context, c client.Client, ns string, names []string, timeout time.Duration, onReady func(name string, after time.Duration)) error {
	start := time.Now()
	ready := map[string]bool{}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			if ready[n] {
				continue
			}
			var crt cmapi.Certificate
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &crt); err != nil {
				return false, nil // not created yet, or the apiserver is busy
			}
			if CertificateReady(&crt) {
				ready[n] = true
				if onReady != nil {
					onReady(n, time.Since(start))
				}
			}
		}
		return len(ready) == len(names), nil
	})
	if err == nil {
		return nil
	}
	var report []string
	for _, n := range names {
		if !ready[n] {
			report = append(report, DescribeCertificate(context.Background(), c, ns, n))
		}
	}
	return fmt.Errorf("certificates not Ready after %s: %w\n%s", timeout, err, strings.Join(report, "\n"))
}

// DescribeCertificate prints a certificate's conditions and those of its
// CertificateRequests.
func DescribeCertificate(ctx context.Context, c client.Client, ns, name string) string {
	return certstatus.Describe(ctx, c, ns, name)
}

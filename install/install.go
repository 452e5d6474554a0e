package install

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/certstatus"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/manifest"
)

// Result of applying one object, as kubectl words it.
type Result string

const (
	Created    Result = "created"
	Configured Result = "configured"
	Unchanged  Result = "unchanged"
)

// Applied is one object written by Apply.
type Applied struct {
	Kind, Namespace, Name string
	Result                Result
}

func (a Applied) String() string {
	name := a.Name
	if a.Namespace != "" {
		name = a.Namespace + "/" + a.Name
	}
	return fmt.Sprintf("%s %s %s", strings.ToLower(a.Kind), name, a.Result)
}

// Apply server-side applies the relay namespace and every object of the
// relay PKI with relay-pki's field manager (the controller's, so the two never
// fight), with the root slots of the current rotation stage, so that
// re-running install after a rotation keeps the new root. It tells created, configured and unchanged apart by resourceVersion:
// applying the same configuration twice changes nothing.
func Apply(ctx context.Context, c client.Client, cfg *config.Config, roots issuer.Roots) ([]Applied, error) {
	var out []Applied
	ns := corev1ac.Namespace(cfg.Namespace)
	before, err := resourceVersion(ctx, c, "v1", "Namespace", "", cfg.Namespace)
	if err != nil {
		return nil, err
	}
	if err := c.Apply(ctx, ns, client.FieldOwner(ssa.FieldManager)); err != nil {
		return nil, fmt.Errorf("apply Namespace %s: %w", cfg.Namespace, err)
	}
	out = append(out, Applied{Kind: "Namespace", Name: cfg.Namespace, Result: result(before, "same")})

	objs, err := manifest.CleanAll(issuer.BuildWithRoots(cfg, roots))
	if err != nil {
		return nil, err
	}
	for _, u := range objs {
		before, err := resourceVersion(ctx, c, u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName())
		if err != nil {
			return out, err
		}
		if err := ssa.Apply(ctx, c, []*unstructured.Unstructured{u}); err != nil {
			return out, err
		}
		after, err := resourceVersion(ctx, c, u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName())
		if err != nil {
			return out, err
		}
		out = append(out, Applied{Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName(), Result: result(before, after)})
	}
	return out, nil
}

func result(before, after string) Result {
	switch {
	case before == "":
		return Created
	case before != after && after != "same":
		return Configured
	default:
		return Unchanged
	}
}

// resourceVersion is "" when the object does not exist.
func resourceVersion(ctx context.Context, c client.Reader, apiVersion, kind, ns, name string) (string, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s %s/%s: %w", kind, ns, name, err)
	}
	return u.GetResourceVersion(), nil
}

// CertificateNames lists the relay PKI's Certificates in apply order.
func CertificateNames(cfg *config.Config, roots issuer.Roots) []string {
	var names []string
	for _, o := range issuer.BuildWithRoots(cfg, roots) {
		if _, ok := o.(*cmapi.Certificate); ok {
			names = append(names, o.GetName())
		}
	}
	return names
}

// Waiter waits for certificates to become Ready and reports each change of
// phase as it happens: one line per change, plus, on a terminal, a spinner
// line naming what is still pending.
type Waiter struct {
	Client   client.Reader
	Out      io.Writer
	Terminal bool
	Poll     time.Duration
	Now      func() time.Time
}

var spinner = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// Wait returns the Ready certificates, or, on timeout, an error carrying each
// unready certificate's conditions and those of its CertificateRequests.
func (w *Waiter) Wait(ctx context.Context, ns string, names []string, timeout time.Duration) ([]cmapi.Certificate, error) {
	if w.Poll == 0 {
		w.Poll = 250 * time.Millisecond
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	start := w.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(w.Poll)
	defer tick.Stop()

	last := map[string]string{}
	certs := make(map[string]cmapi.Certificate, len(names))
	for frame := 0; ; frame++ {
		var pending []string
		for _, n := range names {
			var crt cmapi.Certificate
			phase, reason := "Pending", "not created yet"
			if err := w.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, &crt); err == nil {
				phase, reason = certstatus.Phase(&crt)
				certs[n] = crt
			} else if !apierrors.IsNotFound(err) {
				reason = err.Error()
			}
			line := phase
			if reason != "" {
				line += " (" + reason + ")"
			}
			if last[n] != line {
				last[n] = line
				w.clearLine()
				fmt.Fprintf(w.Out, "  certificate %s: %s after %s\n", n, line, w.Now().Sub(start).Round(10*time.Millisecond))
			}
			if phase != "Ready" {
				pending = append(pending, n)
			}
		}
		if len(pending) == 0 {
			w.clearLine()
			out := make([]cmapi.Certificate, 0, len(names))
			for _, n := range names {
				out = append(out, certs[n])
			}
			return out, nil
		}
		if w.Terminal {
			fmt.Fprintf(w.Out, "\r\033[K%c waiting for %s (%s)", spinner[frame%len(spinner)], strings.Join(pending, ", "), w.Now().Sub(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			w.clearLine()
			return nil, ctx.Err()
		case <-deadline.C:
			w.clearLine()
			var b strings.Builder
			for _, n := range pending {
				b.WriteString(certstatus.Describe(context.WithoutCancel(ctx), w.Client, ns, n))
			}
			return nil, fmt.Errorf("timed out after %s waiting for %s to become Ready:\n%s", timeout, strings.Join(pending, ", "), strings.TrimRight(b.String(), "\n"))
		case <-tick.C:
		}
	}
}

func (w *Waiter) clearLine() {
	if w.Terminal {
		fmt.Fprint(w.Out, "\r\033[K")
	}
}

// Summary prints one row per certificate.
func Summary(out io.Writer, certs []cmapi.Certificate) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tREADY\tNOT AFTER\tRENEWAL\tISSUER\tSECRET")
	for _, c := range certs {
		ready := "False"
		if certstatus.Ready(&c) {
			ready = "True"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s\n", c.Name, ready, timeOrDash(c.Status.NotAfter), timeOrDash(c.Status.RenewalTime),
			orDefault(c.Spec.IssuerRef.Kind, "Issuer"), c.Spec.IssuerRef.Name, c.Spec.SecretName)
	}
	return tw.Flush()
}

func timeOrDash(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

package sync

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	stdsync "sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/manifest"
	"github.com/relay-pki/relay-pki/sync/remote"
	"github.com/relay-pki/relay-pki/sync/rotation"
	"github.com/relay-pki/relay-pki/sync/trust"
)

// TokenBytes is the identity token's entropy; it is stored base64url
// encoded without padding (43 characters).
const TokenBytes = 32

// SourceReconciler keeps the management cluster's side: the issuer objects
// (optional), the identity token, and relay-root-tls-secret holding the
// verified trust bundle. Only a bundle that verifies is ever published, so
// the published copy is also the last good bundle that clusters receive.
type SourceReconciler struct {
	Client        client.Client
	Config        *config.Config
	ManageIssuers bool
	Recorder      record.EventRecorder
	Metrics       *Metrics
	Clock         clock.PassiveClock
	Rand          io.Reader

	// RegistrationNamespace holds the registrations whose confirmations
	// gate a root rotation.
	RegistrationNamespace string
	// APIReader reads the rotation state past the cache, so a decision is
	// never taken on a stale stage.
	APIReader client.Reader
	// VaultTrust finds the root behind Vault (vault mode without a
	// configured trust source).
	VaultTrust *VaultTrust

	// Remotes are the cluster connections, where a deleted token's copies
	// are looked for.
	Remotes *remote.Cache

	mu          stdsync.Mutex
	lastProblem string
	lastWarned  string
	lastToken   []byte
	// tokenMissingSince is when the search for a deleted token began.
	tokenMissingSince time.Time
	// overdueReported: renewals already reported as overdue.
	overdueReported map[string]bool
}

// Reconcile brings the management cluster's side in line. It has one key:
// every change in the namespace leads here.
func (r *SourceReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var errs []error
	requeue := r.Config.Sync.ResyncPeriod.Duration
	roots := issuer.SteadyRoots(0)
	var plan *rotation.Plan
	if rotationActive(r.Config) {
		p, err := r.planRotation(ctx)
		if err != nil {
			// Without the stage, which root signs is unknown: touch neither
			// the issuers nor the bundle until it can be read.
			return ctrl.Result{}, err
		}
		plan, roots = p, p.Roots
		if p.RequeueAfter > 0 && p.RequeueAfter < requeue {
			requeue = p.RequeueAfter
		}
	}
	if r.ManageIssuers {
		if err := r.applyIssuers(ctx, roots); err != nil {
			errs = append(errs, err)
		}
		if plan != nil && plan.Delete != nil {
			if err := r.retireSlot(ctx, *plan.Delete); err != nil {
				errs = append(errs, err)
			}
		}
		if plan != nil && plan.Reissue {
			if err := r.reissueLeaves(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if after, err := r.ensureToken(ctx); err != nil {
		errs = append(errs, err)
	} else if after > 0 && after < requeue {
		requeue = after
	}
	if err := r.publishBundle(ctx, plan); err != nil {
		errs = append(errs, err)
	}
	if r.ManageIssuers {
		if after := r.checkRenewals(ctx); after > 0 && after < requeue {
			requeue = after
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(errs...)
}

// applyIssuers applies the rendered cert-manager objects that differ from
// what the cluster holds; an unchanged object costs no request.
func (r *SourceReconciler) applyIssuers(ctx context.Context, roots issuer.Roots) error {
	for _, obj := range issuer.BuildWithRoots(r.Config, roots) {
		var live client.Object
		switch obj.(type) {
		case *cmapi.Issuer:
			live = &cmapi.Issuer{}
		case *cmapi.Certificate:
			live = &cmapi.Certificate{}
		default:
			continue // Istio objects are rendered for install, not enforced
		}
		want, err := manifest.Clean(obj)
		if err != nil {
			return err
		}
		err = r.Client.Get(ctx, client.ObjectKeyFromObject(obj), live)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read %s %s: %w", want.GetKind(), want.GetName(), err)
		}
		if err == nil {
			liveMap, err := runtime.DefaultUnstructuredConverter.ToUnstructured(live)
			if err != nil {
				return err
			}
			if manifest.Contains(liveMap, want.Object) {
				continue
			}
		}
		if err := ssa.Apply(ctx, r.Client, []*unstructured.Unstructured{want}); err != nil {
			return err
		}
		logf.FromContext(ctx).Info("applied", "kind", want.GetKind(), "object", client.ObjectKeyFromObject(obj))
	}
	return nil
}

// ensureToken creates the identity token secret if there is none. A
// user-provided token is kept as it is. Create, not apply: it must never
// replace a token that agents already hold. A deleted token is restored,
// not replaced: agents that have not registered yet hold it.
func (r *SourceReconciler) ensureToken(ctx context.Context) (time.Duration, error) {
	c := r.Config
	key := client.ObjectKey{Namespace: c.Namespace, Name: c.IdentityToken.SecretName}
	var s corev1.Secret
	err := r.Client.Get(ctx, key, &s)
	switch {
	case err == nil:
		if tok := s.Data[c.IdentityToken.Key]; len(tok) == 0 {
			r.problem(ctx, &s, "TokenMissing", fmt.Sprintf("Secret %s has no %q key; relay-pki does not overwrite a Secret it did not create", key, c.IdentityToken.Key))
		} else {
			r.mu.Lock()
			r.lastToken = slices.Clone(tok)
			r.mu.Unlock()
		}
		return 0, nil
	case !apierrors.IsNotFound(err):
		return 0, fmt.Errorf("read identity token secret %s: %w", key, err)
	}

	token, from, wait := r.knownToken(ctx)
	switch {
	case wait != "":
		logf.FromContext(ctx).Info("identity token missing; not minting a new one yet", "secret", key, "reason", wait)
		return tokenSearchRetry, nil
	case token == nil:
		raw := make([]byte, TokenBytes)
		if _, err := io.ReadFull(r.Rand, raw); err != nil {
			return 0, fmt.Errorf("generate identity token: %w", err)
		}
		token = []byte(base64.RawURLEncoding.EncodeToString(raw))
	}
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: managedLabels(RoleToken)},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{c.IdentityToken.Key: token},
	}
	s.Annotations = map[string]string{ContentHashAnnotation: contentHash(s.Data)}
	if err := r.Client.Create(ctx, &s, client.FieldOwner(ssa.FieldManager)); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, fmt.Errorf("create identity token secret %s: %w", key, err)
	}
	if from != "" {
		logf.FromContext(ctx).Info("restored identity token", "secret", key, "from", from)
		r.Recorder.Event(&s, corev1.EventTypeWarning, "TokenRestored", "the identity token Secret was deleted: restored the same token from "+from+" (relay-pki rotate token replaces it on purpose)")
		return 0, nil
	}
	logf.FromContext(ctx).Info("created identity token", "secret", key)
	r.Recorder.Event(&s, corev1.EventTypeNormal, "TokenCreated", "generated a new identity token (32 random bytes)")
	return 0, nil
}

// tokenSearchRetry is how soon a missing token is looked for again while
// registered clusters that may hold it are not connected yet.
const tokenSearchRetry = 5 * time.Second

// knownToken finds the token the clusters already use: the last value this
// controller saw, else the copy relay-pki manages in the connected
// clusters. It says to wait (and mint nothing) while registered clusters
// are not connected yet, or when their copies disagree. nil with no reason
// means there is no token anywhere: a first installation.
func (r *SourceReconciler) knownToken(ctx context.Context) (token []byte, from, wait string) {
	r.mu.Lock()
	last := slices.Clone(r.lastToken)
	r.mu.Unlock()
	if last != nil {
		return last, "the controller's last known value", ""
	}
	if r.Remotes == nil {
		return nil, "", ""
	}
	var regs corev1.SecretList
	if err := r.Client.List(ctx, &regs, client.InNamespace(r.RegistrationNamespace), client.HasLabels{ClusterLabel}); err != nil {
		return nil, "", "cannot list registrations: " + err.Error()
	}
	c := r.Config
	seen := map[string][]string{}
	var unread []string
	for _, reg := range regs.Items {
		cl, err := r.Remotes.Get(reg.Name)
		if err != nil {
			unread = append(unread, reg.Labels[ClusterLabel])
			continue
		}
		held, err := cl.Cached(c.IdentityToken.SecretName)
		if err != nil || held == nil || !isManaged(held) || len(held.Data[c.IdentityToken.Key]) == 0 {
			continue
		}
		v := string(held.Data[c.IdentityToken.Key])
		seen[v] = append(seen[v], reg.Labels[ClusterLabel])
	}
	switch {
	case len(seen) > 1:
		return nil, "", fmt.Sprintf("registered clusters hold %d different tokens; restore the Secret by hand or run relay-pki rotate token", len(seen))
	case len(seen) == 1:
		for v, clusters := range seen {
			slices.Sort(clusters)
			return []byte(v), "the copy in cluster(s) " + strings.Join(clusters, ", "), ""
		}
	case len(unread) > 0:
		slices.Sort(unread)
		r.mu.Lock()
		if r.tokenMissingSince.IsZero() {
			r.tokenMissingSince = r.Clock.Now()
		}
		waited := r.Clock.Since(r.tokenMissingSince)
		r.mu.Unlock()
		// An unreachable cluster must not keep a new installation without a
		// token for ever.
		if waited < tokenSearchTimeout {
			return nil, "", "waiting to read the copies in " + strings.Join(unread, ", ")
		}
		r.Recorder.Eventf(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.IdentityToken.SecretName}}, corev1.EventTypeWarning, "TokenSearchGaveUp",
			"no copy of the identity token could be read in %s within %s: minting a new one", strings.Join(unread, ", "), tokenSearchTimeout)
	}
	return nil, "", ""
}

// tokenSearchTimeout bounds the wait for unreachable clusters' token copies.
const tokenSearchTimeout = 2 * time.Minute

// publishBundle verifies the trust source against the server and signing
// certificates and publishes it. On any failure it publishes nothing, so
// every cluster keeps the last good bundle, and says why.
func (r *SourceReconciler) publishBundle(ctx context.Context, plan *rotation.Plan) error {
	c := r.Config
	server, err := r.secret(ctx, c.Server.SecretName)
	if err != nil {
		return err
	}
	signing, err := r.secret(ctx, c.Signing.SecretName)
	if err != nil {
		return err
	}
	source, sourceObj, err := r.trustSource(ctx, server, plan)
	if err != nil {
		return err
	}
	r.observeExpiry(issuer.RoleServer, server)
	r.observeExpiry(issuer.RoleSigning, signing)

	published, err := r.secret(ctx, c.TrustBundle.SecretName)
	if err != nil {
		return err
	}
	if server == nil || signing == nil || source == nil {
		// cert-manager has not issued yet; its secrets' events bring us back.
		return nil
	}
	bundle, err := trust.Verify(source, []trust.Leaf{
		{Name: "Secret " + c.Server.SecretName, Chain: r.chain(server)},
		{Name: "Secret " + c.Signing.SecretName, Chain: r.chain(signing)},
	}, r.Clock.Now())
	if err != nil {
		r.Metrics.bundleValid.Set(0)
		on := sourceObj
		if published != nil {
			on = published
		}
		r.problem(ctx, on, "TrustBundleInvalid", "not publishing the trust bundle, keeping the last good one: "+err.Error())
		return nil
	}
	r.Metrics.bundleValid.Set(1)
	r.clearProblem()
	if c.Issuer.Mode() == config.ModeSelfSigned && len(bundle.Anchors) > 0 {
		r.Metrics.notAfter.WithLabelValues(string(issuer.RoleRoot)).Set(float64(bundle.Anchors[0].NotAfter.Unix()))
	}
	for _, w := range bundle.Warnings {
		r.warnOnce(ctx, sourceObj, w)
	}

	data := map[string][]byte{"ca.crt": bundle.PEM}
	hash := contentHash(data)
	if published != nil && isManaged(published) && published.Annotations[ContentHashAnnotation] == hash && contentHash(published.Data) == hash {
		return nil
	}
	ac := corev1ac.Secret(c.TrustBundle.SecretName, c.Namespace).
		WithLabels(managedLabels(RoleTrust)).
		WithAnnotations(map[string]string{ContentHashAnnotation: hash}).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(ssa.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("publish trust bundle %s/%s: %w", c.Namespace, c.TrustBundle.SecretName, err)
	}
	logf.FromContext(ctx).Info("published trust bundle", "secret", client.ObjectKey{Namespace: c.Namespace, Name: c.TrustBundle.SecretName}, "sha256", sha256Hex(bundle.PEM), "anchors", len(bundle.Anchors))
	if published != nil {
		r.Recorder.Eventf(published, corev1.EventTypeNormal, "TrustBundlePublished", "published %d anchor(s), ca.crt sha256 %s", len(bundle.Anchors), sha256Hex(bundle.PEM))
	}
	return nil
}

// trustSource returns the PEM agents must trust and the object it came from.
func (r *SourceReconciler) trustSource(ctx context.Context, server *corev1.Secret, plan *rotation.Plan) ([]byte, client.Object, error) {
	c := r.Config
	if c.Issuer.Mode() == config.ModeSelfSigned {
		// The rotation stage decides which roots are trusted; outside a
		// rotation that is the active slot's root certificate.
		if plan == nil {
			return nil, nil, nil
		}
		root, err := r.secret(ctx, issuer.RootSlot(c, plan.State.Active).Secret)
		if err != nil || root == nil {
			return plan.Bundle, nil, err
		}
		if plan.Bundle == nil {
			// The root's certificate does not parse: hand it to the
			// verifier, which says why nothing is published.
			return root.Data["tls.crt"], root, nil
		}
		return plan.Bundle, root, nil
	}
	src := c.TrustBundle.Source
	switch {
	case src != nil && src.SecretRef != nil:
		s, err := r.secret(ctx, src.SecretRef.Name)
		if err != nil || s == nil {
			return nil, nil, err
		}
		return s.Data[src.SecretRef.Key], s, nil
	case src != nil && src.ConfigMapRef != nil:
		var cm corev1.ConfigMap
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: src.ConfigMapRef.Name}, &cm)
		if apierrors.IsNotFound(err) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read trust source ConfigMap %s: %w", src.ConfigMapRef.Name, err)
		}
		return []byte(cm.Data[src.ConfigMapRef.Key]), &cm, nil
	}
	if c.Issuer.Mode() == config.ModeVault && r.VaultTrust != nil {
		roots, err := r.VaultTrust.Roots(ctx)
		if err != nil {
			published, _ := r.secret(ctx, c.TrustBundle.SecretName)
			var on client.Object
			if published != nil {
				on = published
			}
			r.problem(ctx, on, "TrustSourceUnavailable", "keeping the last good trust bundle: "+err.Error())
			return nil, nil, err
		}
		return roots, server, nil
	}
	if server == nil {
		return nil, nil, nil
	}
	return server.Data["ca.crt"], server, nil
}

// chain is what a peer is shown: tls.crt, and with an external issuer also
// ca.crt, where cert-manager may have put the intermediate that tls.crt
// lacks.
func (r *SourceReconciler) chain(s *corev1.Secret) []byte {
	if r.Config.Issuer.Mode() == config.ModeSelfSigned || len(s.Data["tls.crt"]) == 0 {
		return s.Data["tls.crt"]
	}
	return append(append(append([]byte(nil), s.Data["tls.crt"]...), '\n'), s.Data["ca.crt"]...)
}

func (r *SourceReconciler) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Config.Namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Secret %s/%s: %w", r.Config.Namespace, name, err)
	}
	return &s, nil
}

func (r *SourceReconciler) observeExpiry(role issuer.Role, s *corev1.Secret) {
	if s == nil {
		return
	}
	certs, err := certinfo.ParsePEM(s.Data["tls.crt"])
	if err != nil {
		return
	}
	r.Metrics.notAfter.WithLabelValues(string(role)).Set(float64(firstNotAfter(certs)))
}

func firstNotAfter(certs []*x509.Certificate) int64 { return certs[0].NotAfter.Unix() }

// problem reports a source problem once per distinct message: an Event (no
// secret data in it, only names and x509 errors) and a log line.
func (r *SourceReconciler) problem(ctx context.Context, on client.Object, reason, msg string) {
	r.mu.Lock()
	repeat := r.lastProblem == reason+msg
	r.lastProblem = reason + msg
	r.mu.Unlock()
	if repeat {
		return
	}
	logf.FromContext(ctx).Error(errors.New(msg), "trust source problem", "reason", reason)
	if on != nil {
		r.Recorder.Event(on, corev1.EventTypeWarning, reason, msg)
	}
}

func (r *SourceReconciler) clearProblem() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastProblem = ""
}

func (r *SourceReconciler) warnOnce(ctx context.Context, on client.Object, msg string) {
	r.mu.Lock()
	repeat := r.lastWarned == msg
	r.lastWarned = msg
	r.mu.Unlock()
	if repeat {
		return
	}
	logf.FromContext(ctx).Info("trust anchor warning", "warning", msg)
	if on != nil {
		r.Recorder.Event(on, corev1.EventTypeWarning, "TrustAnchorNotSelfSigned", msg)
	}
}

func managedLabels(role issuer.Role) map[string]string { return issuer.Labels(role) }

func isManaged(s *corev1.Secret) bool { return s.Labels[issuer.ManagedByLabel] == issuer.ManagedBy }

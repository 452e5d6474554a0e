package sync

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"

	cmapiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/certstatus"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/sync/rotation"
)

// RotationConfigMap holds the rotation state (controller-owned keys) and
// requests (keys owned by `relay-pki rotate`) in the relay namespace.
const RotationConfigMap = "relay-pki-rotation"

// reachableStates are the cluster states in which relay-pki can write the
// cluster: only those may hold up a forced rotation.
var reachableStates = map[State]bool{StateSynced: true, StatePending: true, StateConflict: true, StateError: true}

// planRotation reads the rotation state and what the clusters hold, and
// returns the plan for now, having persisted the state first: a controller
// killed after this point resumes from the same state.
func (r *SourceReconciler) planRotation(ctx context.Context) (*rotation.Plan, error) {
	c := r.Config
	var cm corev1.ConfigMap
	err := r.reader().Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: RotationConfigMap}, &cm)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read rotation state %s/%s: %w", c.Namespace, RotationConfigMap, err)
	}
	state, err := rotation.FromData(cm.Data)
	if err != nil {
		return nil, err
	}
	obs, err := r.observeRotation(ctx, rotation.RequestFrom(cm.Data))
	if err != nil {
		return nil, err
	}
	var plan rotation.Plan
	if r.ManageIssuers {
		plan = rotation.Next(state, obs)
	} else {
		// Without the issuer objects relay-pki can neither mint a root nor
		// move the signer: the bundle is the active root, as published by
		// a GitOps tool, and a re-keyed root is refused by verification.
		if req := obs.Request; req.ID != "" && req.ID != state.HandledRequest {
			state.HandledRequest = req.ID
			if cm.UID != "" {
				r.Recorder.Event(&cm, corev1.EventTypeWarning, "RotationRefused", "a root rotation needs --manage-issuers: relay-pki must own the Issuers and Certificates to stage it")
			}
		}
		plan = rotation.Next(state, rotation.Observed{Now: obs.Now, SlotRoots: obs.SlotRoots})
	}
	if !maps.Equal(state.Data(), plan.State.Data()) || !isManagedConfigMap(&cm) {
		ac := corev1ac.ConfigMap(RotationConfigMap, c.Namespace).WithLabels(issuer.Labels(issuer.RoleRoot)).WithData(plan.State.Data())
		if err := r.Client.Apply(ctx, ac, client.FieldOwner(ssa.FieldManager), client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("write rotation state %s/%s: %w", c.Namespace, RotationConfigMap, err)
		}
	}
	if plan.State.Phase != state.Phase {
		logf.FromContext(ctx).Info("rotation", "from", state.Phase, "to", plan.State.Phase, "activeSlot", plan.State.Active)
	}
	on := client.Object(&cm)
	if cm.UID == "" {
		on = nil
	}
	for _, e := range plan.Events {
		t := corev1.EventTypeNormal
		if e.Warning {
			t = corev1.EventTypeWarning
		}
		if on != nil {
			r.Recorder.Event(on, t, e.Reason, e.Message)
		}
	}
	r.Metrics.observeRotation(plan.State.Phase, len(plan.State.WaitingFor))
	return &plan, nil
}

func (r *SourceReconciler) reader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

func isManagedConfigMap(cm *corev1.ConfigMap) bool {
	return cm.Labels[issuer.ManagedByLabel] == issuer.ManagedBy
}

func (r *SourceReconciler) observeRotation(ctx context.Context, req rotation.Request) (rotation.Observed, error) {
	c := r.Config
	o := rotation.Observed{
		Now: r.Clock.Now(), Request: req,
		GracePeriod:         c.Rotation.GracePeriod.Duration,
		DistributionTimeout: c.Rotation.DistributionTimeout.Duration,
		SlotRoots:           map[issuer.Slot]*x509.Certificate{},
	}
	for _, slot := range []issuer.Slot{0, 1} {
		s, err := r.secret(ctx, issuer.RootSlot(c, slot).Secret)
		if err != nil {
			return o, err
		}
		if s == nil {
			continue
		}
		if certs, err := certinfo.ParsePEM(s.Data["tls.crt"]); err == nil {
			o.SlotRoots[slot] = certs[0]
		}
	}
	published, err := r.secret(ctx, c.TrustBundle.SecretName)
	if err != nil {
		return o, err
	}
	// Only a copy relay-pki verified counts; a hand edit is no confirmation.
	if published != nil && isManaged(published) && published.Annotations[ContentHashAnnotation] == contentHash(published.Data) {
		o.PublishedHash = rotation.Hash(published.Data["ca.crt"])
		o.Published, _ = certinfo.ParsePEM(published.Data["ca.crt"])
	}
	server, err := r.secret(ctx, c.Server.SecretName)
	if err != nil {
		return o, err
	}
	signing, err := r.secret(ctx, c.Signing.SecretName)
	if err != nil {
		return o, err
	}
	if server != nil && signing != nil {
		o.ServerChain, o.SigningChain = server.Data["tls.crt"], signing.Data["tls.crt"]
	}
	o.LeavesReady = true
	for _, name := range []string{issuer.ServerCertificateName, issuer.SigningCertificateName} {
		var crt cmapi.Certificate
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, &crt); err != nil || !certstatus.Ready(&crt) {
			o.LeavesReady = false
		}
	}

	var regs corev1.SecretList
	if err := r.Client.List(ctx, &regs, client.InNamespace(r.RegistrationNamespace), client.HasLabels{ClusterLabel}); err != nil {
		return o, fmt.Errorf("list registrations: %w", err)
	}
	for _, reg := range regs.Items {
		if !reg.DeletionTimestamp.IsZero() {
			continue
		}
		o.Clusters = append(o.Clusters, rotation.Cluster{
			Name:      reg.Labels[ClusterLabel],
			CAHash:    reg.Annotations[CAHashAnnotation],
			Reachable: reachableStates[State(reg.Annotations[StateAnnotation])],
		})
	}
	return o, nil
}

// retireSlot removes a root slot's Certificate, CA Issuer and Secret (which
// cert-manager leaves behind), so that the next rotation mints a fresh key.
func (r *SourceReconciler) retireSlot(ctx context.Context, slot issuer.Slot) error {
	n := issuer.RootSlot(r.Config, slot)
	for _, obj := range []client.Object{&cmapi.Certificate{}, &cmapi.Issuer{}, &corev1.Secret{}} {
		name := map[string]string{"*v1.Certificate": n.Certificate, "*v1.Issuer": n.Issuer, "*v1.Secret": n.Secret}[fmt.Sprintf("%T", obj)]
		key := client.ObjectKey{Namespace: r.Config.Namespace, Name: name}
		if err := r.Client.Get(ctx, key, obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("read %s of retired root slot: %w", key, err)
		}
		if err := r.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %T %s of retired root slot: %w", obj, key, err)
		}
		logf.FromContext(ctx).Info("deleted retired root object", "object", key, "kind", fmt.Sprintf("%T", obj))
	}
	// The retired root's CertificateRequests are owned by its Certificate,
	// but a garbage collector may be slow (or absent): one left behind would
	// block the next rotation's request of the same name.
	var crs cmapi.CertificateRequestList
	if err := r.reader().List(ctx, &crs, client.InNamespace(r.Config.Namespace)); err != nil {
		return fmt.Errorf("list CertificateRequests of retired root slot: %w", err)
	}
	for i := range crs.Items {
		cr := &crs.Items[i]
		if cr.Annotations[cmapi.CertificateNameKey] != n.Certificate {
			continue
		}
		if err := r.Client.Delete(ctx, cr); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete CertificateRequest %s of retired root slot: %w", cr.Name, err)
		}
	}
	return nil
}

// reissueLeaves asks cert-manager to re-issue the server and signing
// certificates, as `cmctl renew` does; used when a root's key changed in
// place and their issuerRef therefore did not.
func (r *SourceReconciler) reissueLeaves(ctx context.Context) error {
	for _, name := range []string{issuer.ServerCertificateName, issuer.SigningCertificateName} {
		var crt cmapi.Certificate
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Config.Namespace, Name: name}, &crt); err != nil {
			return fmt.Errorf("read Certificate %s: %w", name, err)
		}
		if c := certstatus.Condition(&crt, cmapi.CertificateConditionIssuing); c != nil && c.Status == cmmeta.ConditionTrue {
			continue
		}
		cmapiutil.SetCertificateCondition(&crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "RootRotated", "relay-pki: re-issue under the rotated root")
		if err := r.Client.Status().Update(ctx, &crt); err != nil {
			return fmt.Errorf("request re-issue of Certificate %s: %w", name, err)
		}
		logf.FromContext(ctx).Info("requested re-issue under the rotated root", "certificate", name)
	}
	return nil
}

// rotationActive reports whether c can rotate at all.
func rotationActive(c *config.Config) bool { return c.Issuer.Mode() == config.ModeSelfSigned }

package sync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/sync/remote"
)

// Options wire the controllers.
type Options struct {
	Config *config.Config
	// RegistrationNamespace holds the registration Secrets.
	RegistrationNamespace string
	// ManageIssuers applies the issuer objects continuously.
	ManageIssuers bool
	// MaxConcurrentSyncs bounds clusters synced at once; a slow cluster
	// holds one worker, never all.
	MaxConcurrentSyncs int
	// ConnectTimeout bounds connecting to one cluster.
	ConnectTimeout time.Duration
	// Metrics, when set, are reused: a process that sets up a new manager
	// after losing leadership must not register its series twice.
	Metrics *Metrics
}

// CacheOptions keep the manager's cache narrow: Secrets only in the relay
// namespace and, label-selected, in the registration namespace; relay-pki's
// own Certificates and Issuers. Private keys are dropped as Secrets enter
// the cache: the controller never needs them, so it never holds them.
func CacheOptions(o Options) cache.Options {
	regSelector := labels.NewSelector()
	req, _ := labels.NewRequirement(ClusterLabel, selection.Exists, nil)
	regSelector = regSelector.Add(*req)
	secretNamespaces := map[string]cache.Config{
		o.Config.Namespace:      {},
		o.RegistrationNamespace: {LabelSelector: regSelector},
	}
	if o.RegistrationNamespace == o.Config.Namespace {
		secretNamespaces = map[string]cache.Config{o.Config.Namespace: {}}
	}
	managed := labels.SelectorFromSet(labels.Set{issuer.ManagedByLabel: issuer.ManagedBy})
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Namespaces: secretNamespaces, Transform: dropPrivateKeys},
	}
	if o.ManageIssuers {
		byObject[&cmapi.Certificate{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.Config.Namespace: {}}, Label: managed}
		byObject[&cmapi.Issuer{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.Config.Namespace: {}}, Label: managed}
	}
	// ConfigMaps: the rotation state and requests (labelled), and a
	// ConfigMap trust source when one is configured (the user's, unlabelled).
	cmConfig := cache.Config{LabelSelector: managed}
	if src := o.Config.TrustBundle.Source; src != nil && src.ConfigMapRef != nil {
		cmConfig = cache.Config{}
	}
	byObject[&corev1.ConfigMap{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.Config.Namespace: cmConfig}}
	return cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()}
}

func dropPrivateKeys(obj any) (any, error) {
	if s, ok := obj.(*corev1.Secret); ok {
		delete(s.Data, corev1.TLSPrivateKeyKey)
		s.ManagedFields = nil
	}
	return obj, nil
}

// statusWorkers write registration status; the management client's rate
// limit, not their number, paces them.
const statusWorkers = 4

// statusDelay holds registration status writes back after a sync. A
// rotation stage, which waits for them, waits this much longer.
const statusDelay = 2 * time.Second

// SetupWithManager registers the source and cluster controllers and the
// remote cluster cache with mgr.
func SetupWithManager(mgr ctrl.Manager, o Options) error {
	if o.Config == nil || o.RegistrationNamespace == "" {
		return errors.New("sync: Config and RegistrationNamespace are required")
	}
	if o.MaxConcurrentSyncs <= 0 {
		o.MaxConcurrentSyncs = 50
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	// The controllers are set up again, under the same names, by a process
	// that campaigns again after losing leadership.
	reSetup := ptr.To(true)
	m := o.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(metrics.Registry); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	recorder := mgr.GetEventRecorderFor("relay-pki") //nolint:staticcheck // record.EventRecorder is what the reconcilers are tested with
	c := o.Config

	// Source: one key; anything in the relay namespace may change it.
	remoteEvents := make(chan event.GenericEvent, 4096)
	remotes := remote.NewCache(remote.KubeconfigPolicy{}, o.ConnectTimeout, func(key string) {
		remoteEvents <- event.GenericEvent{Object: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: o.RegistrationNamespace, Name: key}}}
	})
	if err := mgr.Add(remotes); err != nil {
		return fmt.Errorf("add remote cluster cache: %w", err)
	}
	src := &SourceReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Config: c, ManageIssuers: o.ManageIssuers, RegistrationNamespace: o.RegistrationNamespace,
		Recorder: recorder, Metrics: m, Clock: clock.RealClock{}, Rand: rand.Reader, Remotes: remotes,
	}
	if v := c.Issuer.Vault; v != nil && c.TrustBundle.Source == nil {
		vt, err := NewVaultTrust(v)
		if err != nil {
			return err
		}
		src.VaultTrust = vt
	}
	sourceKey := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: c.Namespace, Name: "relay-pki-source"}}
	toSource := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{sourceKey} })
	inRelayNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == c.Namespace })
	kick := make(chan event.GenericEvent, 1)
	kick <- event.GenericEvent{Object: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: "relay-pki-source"}}}
	b := ctrl.NewControllerManagedBy(mgr).Named("source").
		WatchesRawSource(source.Channel(kick, toSource)).
		Watches(&corev1.Secret{}, toSource, builder.WithPredicates(inRelayNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: reSetup})
	if o.ManageIssuers {
		b = b.Watches(&cmapi.Certificate{}, toSource).Watches(&cmapi.Issuer{}, toSource)
	}
	// The rotation state and requests, or a ConfigMap trust source.
	b = b.Watches(&corev1.ConfigMap{}, toSource, builder.WithPredicates(inRelayNamespace))
	// A rotation waits for every registration to confirm the bundle.
	if c.Issuer.Mode() == config.ModeSelfSigned {
		b = b.Watches(&corev1.Secret{}, toSource, builder.WithPredicates(predicate.NewPredicateFuncs(func(obj client.Object) bool {
			_, ok := obj.GetLabels()[ClusterLabel]
			return obj.GetNamespace() == o.RegistrationNamespace && ok
		})))
	}
	if err := b.Complete(src); err != nil {
		return fmt.Errorf("set up source controller: %w", err)
	}

	// Clusters: one key per registration.
	status := newStatusWriter(mgr.GetClient(), statusWorkers, statusDelay)
	if err := mgr.Add(status); err != nil {
		return fmt.Errorf("add status writer: %w", err)
	}
	cr := &ClusterReconciler{
		Client: mgr.GetClient(), Config: c, Namespace: o.RegistrationNamespace, Remotes: remotes,
		Recorder: recorder, Metrics: m, Clock: clock.RealClock{}, ProbeTimeout: o.ConnectTimeout, Status: status,
	}
	isRegistration := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		_, ok := obj.GetLabels()[ClusterLabel]
		return obj.GetNamespace() == o.RegistrationNamespace && ok
	})
	distributed := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		return obj.GetNamespace() == c.Namespace && (obj.GetName() == c.TrustBundle.SecretName || obj.GetName() == c.IdentityToken.SecretName)
	})
	allClusters := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var regs corev1.SecretList
		if err := mgr.GetClient().List(ctx, &regs, client.InNamespace(o.RegistrationNamespace), client.HasLabels{ClusterLabel}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list registrations")
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(regs.Items))
		for _, r := range regs.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&r)})
		}
		return reqs
	})
	notOwnStatus := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return !onlyStatusChanged(e.ObjectOld, e.ObjectNew) }}
	err := ctrl.NewControllerManagedBy(mgr).Named("cluster").
		For(&corev1.Secret{}, builder.WithPredicates(isRegistration, notOwnStatus)).
		Watches(&corev1.Secret{}, allClusters, builder.WithPredicates(distributed)).
		WatchesRawSource(source.Channel(remoteEvents, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.MaxConcurrentSyncs, SkipNameValidation: reSetup}).
		Complete(cr)
	if err != nil {
		return fmt.Errorf("set up cluster controller: %w", err)
	}
	return nil
}

package sync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	stdsync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/internal/ssa"
	"github.com/relay-pki/relay-pki/issuer"
	"github.com/relay-pki/relay-pki/sync/remote"
)

// Backoff for clusters that cannot be reached: from the first retry to the
// cap, doubling. RequeueAfter, never an error, so an unreachable cluster
// does not hot-loop through the rate limiter.
const (
	minBackoff = 5 * time.Second
	maxBackoff = 5 * time.Minute
)

// ClusterReconciler keeps relay-root-tls-secret and
// relay-identity-token-secret in one registered cluster equal to the
// management cluster's, writing only when they differ. Its key is the
// registration Secret.
type ClusterReconciler struct {
	Client client.Client
	Config *config.Config
	// Namespace holds the registrations.
	Namespace    string
	Remotes      *remote.Cache
	Recorder     record.EventRecorder
	Metrics      *Metrics
	Clock        clock.PassiveClock
	ProbeTimeout time.Duration
	// Status applies the registrations' status annotations.
	Status *statusWriter

	mu       stdsync.Mutex
	clusters map[string]*clusterState // by registration name
	// byState counts clusters per state, kept as states change: counting
	// them on every sync made each of N syncs cost O(N).
	byState map[State]int
}

type clusterState struct {
	cluster  string
	state    State
	failures int
}

// desired is what every cluster must hold, read from the management cluster.
type desired struct {
	trust map[string][]byte
	token map[string][]byte
}

// result of one sync: becomes the registration's status annotations.
type result struct {
	state   State
	message string
	caHash  string
	wrote   bool
	after   time.Duration
}

// Reconcile syncs one registered cluster.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var reg corev1.Secret
	if err := r.Client.Get(ctx, req.NamespacedName, &reg); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	cluster := reg.Labels[ClusterLabel]
	if cluster == "" {
		r.forget(req.Name)
		return ctrl.Result{}, nil
	}
	log := logf.FromContext(ctx).WithValues("cluster", cluster)
	ctx = logf.IntoContext(ctx, log)

	if !reg.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &reg, cluster)
	}
	if r.Config.Sync.DeletionPolicy == config.DeletionPolicyDelete && !controllerutil.ContainsFinalizer(&reg, CleanupFinalizer) {
		patch := client.MergeFrom(reg.DeepCopy())
		controllerutil.AddFinalizer(&reg, CleanupFinalizer)
		if err := r.Client.Patch(ctx, &reg, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer to registration %s: %w", req.Name, err)
		}
	}

	start := r.Clock.Now()
	res := r.sync(ctx, &reg, cluster)
	r.Metrics.syncDuration.Observe(r.Clock.Since(start).Seconds())
	r.writeStatus(ctx, &reg, cluster, res)
	return ctrl.Result{RequeueAfter: res.after}, nil
}

func (r *ClusterReconciler) sync(ctx context.Context, reg *corev1.Secret, cluster string) result {
	log := logf.FromContext(ctx)
	ns := r.Config.Namespace
	if v, ok := reg.Annotations[NamespaceAnnotation]; ok {
		if msgs := validation.IsDNS1123Label(v); len(msgs) > 0 {
			return result{state: StateError, message: fmt.Sprintf("annotation %s=%q is not a namespace name: %s", NamespaceAnnotation, v, msgs[0])}
		}
		ns = v
	}
	names := []string{r.Config.TrustBundle.SecretName, r.Config.IdentityToken.SecretName}

	// Connect even while the management side is not ready: a deleted token
	// is restored from the copies the connections hold.
	cl, err := r.Remotes.Connect(ctx, reg.Name, remote.Target{Kubeconfig: reg.Data[KubeconfigKey], Namespace: ns, SecretNames: names})
	if err != nil {
		return r.failure(ctx, reg.Name, cluster, err)
	}
	if werr := cl.WatchError(); werr != nil {
		// The watch broke: ask once whether the cluster is back.
		if err := cl.Probe(ctx, r.ProbeTimeout); err != nil {
			return r.failure(ctx, reg.Name, cluster, err)
		}
	}
	want, ok, why := r.desired(ctx)
	if !ok {
		return result{state: StatePending, message: why, after: minBackoff}
	}

	res := result{state: StateSynced, after: r.Config.Sync.ResyncPeriod.Duration}
	var conflicts []string
	for _, s := range []struct {
		name string
		role issuer.Role
		data map[string][]byte
	}{
		{names[0], RoleTrust, want.trust},
		{names[1], RoleToken, want.token},
	} {
		stored, wrote, err := r.syncSecret(ctx, cl, s.name, s.role, s.data)
		switch {
		case errors.Is(err, errConflict):
			conflicts = append(conflicts, s.name)
		case err != nil:
			return r.failure(ctx, reg.Name, cluster, err)
		}
		if s.role == RoleTrust && stored != nil {
			res.caHash = sha256Hex(stored["ca.crt"])
		}
		res.wrote = res.wrote || wrote
	}
	r.resetFailures(reg.Name)
	if len(conflicts) > 0 {
		res.state = StateConflict
		res.message = fmt.Sprintf("Secret(s) %v in namespace %s exist and are not managed by relay-pki; left untouched (set sync.adoptExisting: true to take them over)", conflicts, ns)
		r.Metrics.syncErrors.WithLabelValues(cluster, string(StateConflict)).Inc()
		return res
	}
	if res.wrote {
		log.Info("synced", "targetNamespace", ns, "caSHA256", res.caHash)
	} else {
		log.V(2).Info("in sync, nothing written", "targetNamespace", ns)
	}
	return res
}

var errConflict = errors.New("unmanaged secret in the way")

// syncSecret makes one remote Secret hold exactly data. It writes nothing
// when the cached copy already does.
//
// It returns the data the cluster holds afterwards, as its apiserver
// reported it (the cached copy, or the write's response): that, not what
// was sent, is what a rotation's confirmation gate relies on.
func (r *ClusterReconciler) syncSecret(ctx context.Context, cl *remote.Cluster, name string, role issuer.Role, data map[string][]byte) (map[string][]byte, bool, error) {
	hash := contentHash(data)
	live, err := cl.Cached(name)
	if err != nil {
		return nil, false, err
	}
	if live != nil {
		if !isManaged(live) && !r.Config.Sync.AdoptExisting {
			return nil, false, errConflict
		}
		if isManaged(live) && live.Annotations[ContentHashAnnotation] == hash && contentHash(live.Data) == hash && live.Labels[issuer.RoleLabel] == string(role) {
			return live.Data, false, nil
		}
		if !sameKeys(live.Data, data) || !isManaged(live) {
			// Apply cannot remove keys another writer added (or that an
			// adopted Secret had): replace the data whole.
			upd := live.DeepCopy()
			upd.Data = data
			upd.StringData = nil
			if upd.Labels == nil {
				upd.Labels = map[string]string{}
			}
			maps.Copy(upd.Labels, managedLabels(role))
			if upd.Annotations == nil {
				upd.Annotations = map[string]string{}
			}
			upd.Annotations[ContentHashAnnotation] = hash
			stored, err := cl.Secrets.Update(ctx, upd, metav1.UpdateOptions{FieldManager: ssa.FieldManager})
			if err != nil {
				return nil, false, fmt.Errorf("replace Secret %s/%s: %w", cl.Namespace, name, err)
			}
			logf.FromContext(ctx).Info("replaced remote secret", "secret", name, "adopted", !isManaged(live))
			return stored.Data, true, nil
		}
	}
	ac := corev1ac.Secret(name, cl.Namespace).
		WithLabels(managedLabels(role)).
		WithAnnotations(map[string]string{ContentHashAnnotation: hash}).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
	opts := metav1.ApplyOptions{FieldManager: ssa.FieldManager, Force: true}
	stored, err := cl.Secrets.Apply(ctx, ac, opts)
	if apierrors.IsNotFound(err) && *r.Config.Sync.CreateNamespace {
		// Namespace missing: create it and try once more. Doing it here
		// costs nothing in the steady state.
		_, nsErr := cl.Namespaces.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cl.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "relay-pki"}}}, metav1.CreateOptions{FieldManager: ssa.FieldManager})
		if nsErr != nil && !apierrors.IsAlreadyExists(nsErr) {
			return nil, false, fmt.Errorf("create namespace %s: %w", cl.Namespace, nsErr)
		}
		stored, err = cl.Secrets.Apply(ctx, ac, opts)
	}
	if err != nil {
		return nil, false, fmt.Errorf("apply Secret %s/%s: %w", cl.Namespace, name, err)
	}
	return stored.Data, true, nil
}

// desired reads what clusters must hold from the management cluster. The
// trust bundle is only distributed while its content hash annotation
// matches its data: a hand edit of the management copy is not spread
// before the source reconciler has restored it.
func (r *ClusterReconciler) desired(ctx context.Context) (desired, bool, string) {
	c := r.Config
	var trustSecret, tokenSecret corev1.Secret
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.TrustBundle.SecretName}, &trustSecret); err != nil {
		return desired{}, false, fmt.Sprintf("waiting for the trust bundle %s/%s: %v", c.Namespace, c.TrustBundle.SecretName, errReason(err))
	}
	if !isManaged(&trustSecret) || trustSecret.Annotations[ContentHashAnnotation] != contentHash(trustSecret.Data) || len(trustSecret.Data["ca.crt"]) == 0 {
		return desired{}, false, fmt.Sprintf("the trust bundle %s/%s does not match what relay-pki verified; waiting for it to be restored", c.Namespace, c.TrustBundle.SecretName)
	}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.IdentityToken.SecretName}, &tokenSecret); err != nil {
		return desired{}, false, fmt.Sprintf("waiting for the identity token %s/%s: %v", c.Namespace, c.IdentityToken.SecretName, errReason(err))
	}
	token := tokenSecret.Data[c.IdentityToken.Key]
	if len(token) == 0 {
		return desired{}, false, fmt.Sprintf("the identity token secret %s/%s has no %q key", c.Namespace, c.IdentityToken.SecretName, c.IdentityToken.Key)
	}
	return desired{
		trust: map[string][]byte{"ca.crt": trustSecret.Data["ca.crt"]},
		token: map[string][]byte{c.IdentityToken.Key: token},
	}, true, ""
}

// failure classifies a connection or write error into a state with a
// backoff. Messages carry API errors, which name objects and never Secret
// data.
func (r *ClusterReconciler) failure(ctx context.Context, regName, cluster string, err error) result {
	state := StateUnreachable
	switch {
	case remote.IsInvalidKubeconfig(err):
		state = StateInvalidKubeconfig
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		state = StateForbidden
	case apierrors.IsConflict(err) || apierrors.IsInvalid(err):
		state = StateError
	}
	r.Metrics.syncErrors.WithLabelValues(cluster, string(state)).Inc()
	logf.FromContext(ctx).Info("sync failed", "state", state, "error", err.Error())
	if state == StateInvalidKubeconfig {
		r.Remotes.Disconnect(regName)
		// Nothing to retry until the registration changes, which re-queues.
		return result{state: state, message: err.Error()}
	}
	return result{state: state, message: err.Error(), after: r.backoff(regName)}
}

func (r *ClusterReconciler) backoff(regName string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stateFor(regName)
	d := minBackoff << min(st.failures, 10)
	st.failures++
	return min(d, maxBackoff)
}

func (r *ClusterReconciler) resetFailures(regName string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stateFor(regName).failures = 0
}

func (r *ClusterReconciler) stateFor(regName string) *clusterState {
	if r.clusters == nil {
		r.clusters = map[string]*clusterState{}
	}
	st, ok := r.clusters[regName]
	if !ok {
		st = &clusterState{}
		r.clusters[regName] = st
	}
	return st
}

// writeStatus records the result on the registration, and sends an Event,
// only when something changed: a steady cluster costs no write. The write
// itself is the status writer's, so that the next cluster's sync does not
// wait for it.
func (r *ClusterReconciler) writeStatus(ctx context.Context, reg *corev1.Secret, cluster string, res result) {
	// The state this controller last found, else the one recorded: the
	// cached registration lags behind a status write still under way.
	prev := State(reg.Annotations[StateAnnotation])
	r.mu.Lock()
	st := r.stateFor(reg.Name)
	if st.state != "" {
		prev = st.state
	}
	old := st.state
	st.cluster, st.state = cluster, res.state
	r.mu.Unlock()
	r.observeStates(old, res.state)
	synced := 0.0
	if res.state == StateSynced {
		synced = 1
	}
	r.Metrics.clusterSynced.WithLabelValues(cluster).Set(synced)

	syncedAt := reg.Annotations[SyncedAtAnnotation]
	caHash := reg.Annotations[CAHashAnnotation]
	if res.state == StateSynced {
		caHash = res.caHash
		if res.wrote || prev != StateSynced || syncedAt == "" {
			syncedAt = r.Clock.Now().UTC().Format(time.RFC3339)
		}
	}
	want := map[string]string{StateAnnotation: string(res.state), MessageAnnotation: res.message, CAHashAnnotation: caHash, SyncedAtAnnotation: syncedAt}
	same := true
	for k, v := range want {
		if reg.Annotations[k] != v {
			same = false
		}
	}
	if same {
		return
	}
	r.Status.set(client.ObjectKeyFromObject(reg), reg.UID, want)
	if prev != res.state {
		eventType := corev1.EventTypeWarning
		if res.state == StateSynced {
			eventType = corev1.EventTypeNormal
		}
		msg := res.message
		if msg == "" {
			msg = fmt.Sprintf("cluster %s holds the trust bundle (ca.crt sha256 %s) and the identity token", cluster, res.caHash)
		}
		r.Recorder.Event(reg, eventType, string(res.state), msg)
	}
}

// observeStates moves one cluster from state from to state to ("" for
// none) in the clusters-by-state gauge.
func (r *ClusterReconciler) observeStates(from, to State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byState == nil {
		r.byState = map[State]int{}
		// Every state has a series from the start, so that a dashboard
		// shows 0 rather than nothing.
		for _, s := range []State{StateSynced, StatePending, StateUnreachable, StateConflict, StateInvalidKubeconfig, StateForbidden, StateError} {
			r.Metrics.clustersByState.WithLabelValues(string(s)).Set(0)
		}
	}
	if from == to {
		return
	}
	if from != "" {
		r.byState[from]--
		r.Metrics.clustersByState.WithLabelValues(string(from)).Set(float64(r.byState[from]))
	}
	if to != "" {
		r.byState[to]++
		r.Metrics.clustersByState.WithLabelValues(string(to)).Set(float64(r.byState[to]))
	}
}

// forget drops everything held for a registration that is gone.
func (r *ClusterReconciler) forget(regName string) {
	r.Remotes.Disconnect(regName)
	r.Status.drop(client.ObjectKey{Namespace: r.Namespace, Name: regName})
	r.mu.Lock()
	st, ok := r.clusters[regName]
	delete(r.clusters, regName)
	r.mu.Unlock()
	if ok && st.cluster != "" {
		r.Metrics.forgetCluster(st.cluster)
	}
	if ok {
		r.observeStates(st.state, "")
	}
}

// finalize removes relay-pki's copies from a deregistered cluster when the
// deletion policy says so, then lets the registration go.
func (r *ClusterReconciler) finalize(ctx context.Context, reg *corev1.Secret, cluster string) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(reg, CleanupFinalizer) {
		r.forget(reg.Name)
		return ctrl.Result{}, nil
	}
	ns := r.Config.Namespace
	if v := reg.Annotations[NamespaceAnnotation]; v != "" {
		ns = v
	}
	names := []string{r.Config.TrustBundle.SecretName, r.Config.IdentityToken.SecretName}
	cl, err := r.Remotes.Connect(ctx, reg.Name, remote.Target{Kubeconfig: reg.Data[KubeconfigKey], Namespace: ns, SecretNames: names})
	if err != nil && !remote.IsInvalidKubeconfig(err) {
		res := r.failure(ctx, reg.Name, cluster, err)
		return ctrl.Result{RequeueAfter: res.after}, nil
	}
	if err == nil {
		for _, name := range names {
			live, err := cl.Cached(name)
			if err != nil || live == nil || !isManaged(live) {
				continue
			}
			uid := live.UID
			err = cl.Secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, fmt.Errorf("delete Secret %s/%s in cluster %s: %w", ns, name, cluster, err)
			}
		}
		logf.FromContext(ctx).Info("deregistered: removed relay-pki's secrets", "targetNamespace", ns)
	}
	patch := client.MergeFrom(reg.DeepCopy())
	controllerutil.RemoveFinalizer(reg, CleanupFinalizer)
	if err := r.Client.Patch(ctx, reg, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("remove finalizer from registration %s: %w", reg.Name, err)
	}
	r.forget(reg.Name)
	return ctrl.Result{}, nil
}

func sameKeys(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func errReason(err error) string {
	if apierrors.IsNotFound(err) {
		return "not found"
	}
	return err.Error()
}

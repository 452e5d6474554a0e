package sync

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	stdsync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/relay-pki/relay-pki/internal/ssa"
)

// statusWriter applies registration status annotations off the sync path.
// A trust or token change reaches every cluster first; the management
// apiserver's rate limit then paces the status writes, not the
// distribution. Writes are coalesced per registration (the latest status
// wins) and retried with backoff until they land or the registration goes.
type statusWriter struct {
	client  client.Client
	workers int
	// delay holds a write back so that a change's status writes follow
	// its fan-out instead of competing with it for the management
	// apiserver, and so that repeated syncs of a cluster write once.
	delay time.Duration
	queue workqueue.TypedRateLimitingInterface[client.ObjectKey]

	mu      stdsync.Mutex
	pending map[client.ObjectKey]status
}

// status is the annotations one registration, by UID, must carry.
type status struct {
	uid types.UID
	ann map[string]string
}

func newStatusWriter(c client.Client, workers int, delay time.Duration) *statusWriter {
	return &statusWriter{
		client: c, workers: workers, delay: delay, pending: map[client.ObjectKey]status{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[client.ObjectKey](),
			workqueue.TypedRateLimitingQueueConfig[client.ObjectKey]{Name: "relay-pki-status"}),
	}
}

// set asks for the annotations of the registration with uid to become ann.
func (w *statusWriter) set(key client.ObjectKey, uid types.UID, ann map[string]string) {
	w.mu.Lock()
	w.pending[key] = status{uid: uid, ann: maps.Clone(ann)}
	w.mu.Unlock()
	w.queue.AddAfter(key, w.delay)
}

// drop forgets a registration that is gone.
func (w *statusWriter) drop(key client.ObjectKey) {
	w.mu.Lock()
	delete(w.pending, key)
	w.mu.Unlock()
}

// Start implements manager.Runnable.
func (w *statusWriter) Start(ctx context.Context) error {
	var wg stdsync.WaitGroup
	for range w.workers {
		wg.Go(func() {
			for w.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	w.queue.ShutDown()
	wg.Wait()
	return nil
}

// NeedLeaderElection: only the leader writes status.
func (w *statusWriter) NeedLeaderElection() bool { return true }

func (w *statusWriter) next(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	w.mu.Lock()
	st, ok := w.pending[key]
	delete(w.pending, key)
	w.mu.Unlock()
	if !ok {
		w.queue.Forget(key)
		return true
	}
	if err := w.write(ctx, key, st); err != nil {
		logf.FromContext(ctx).Info("status write failed; retrying", "registration", key, "error", err.Error())
		w.mu.Lock()
		if _, newer := w.pending[key]; !newer {
			w.pending[key] = st
		}
		w.mu.Unlock()
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

func (w *statusWriter) write(ctx context.Context, key client.ObjectKey, st status) error {
	// Apply creates what does not exist: never for a registration that
	// was deleted (or deleted and made again) since its sync.
	var reg corev1.Secret
	if err := w.client.Get(ctx, key, &reg); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("read registration %s: %w", key.Name, err)
	}
	if reg.UID != st.uid || !reg.DeletionTimestamp.IsZero() {
		return nil
	}
	ac := corev1ac.Secret(key.Name, key.Namespace).WithAnnotations(st.ann)
	if err := w.client.Apply(ctx, ac, client.FieldOwner(ssa.FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("write status of registration %s: %w", key.Name, err)
	}
	return nil
}

// statusAnnotations are the cluster controller's output on a registration.
var statusAnnotations = []string{StateAnnotation, MessageAnnotation, CAHashAnnotation, SyncedAtAnnotation}

// onlyStatusChanged reports whether an update of a registration changed
// nothing but its status annotations. Such an update is the controller's
// own output and must not start another sync: with a failure message that
// varies between attempts, it made a loop paced by the status writer that
// defeated the backoff.
func onlyStatusChanged(oldObj, newObj client.Object) bool {
	o, ok1 := oldObj.(*corev1.Secret)
	n, ok2 := newObj.(*corev1.Secret)
	if !ok1 || !ok2 {
		return false
	}
	strip := func(a map[string]string) map[string]string {
		out := maps.Clone(a)
		for _, k := range statusAnnotations {
			delete(out, k)
		}
		return out
	}
	return o.UID == n.UID &&
		maps.Equal(o.Labels, n.Labels) &&
		maps.Equal(strip(o.Annotations), strip(n.Annotations)) &&
		slices.Equal(o.Finalizers, n.Finalizers) &&
		o.DeletionTimestamp.Equal(n.DeletionTimestamp) &&
		o.Type == n.Type &&
		maps.EqualFunc(o.Data, n.Data, bytes.Equal)
}

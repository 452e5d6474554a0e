package sync

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/relay-pki/relay-pki/internal/scheme"
)

func TestStatusWriter(t *testing.T) {
	key := client.ObjectKey{Namespace: "relay-pki-system", Name: "workload-1"}
	reg := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, UID: "uid-1"}}
	}
	for _, tc := range []struct {
		name string
		// seed is the registration in the cluster, nil for none.
		seed *corev1.Secret
		uid  types.UID
		// failApplies makes the first n applies fail.
		failApplies int
		sets        []map[string]string
		want        map[string]string // nil: the registration must not exist afterwards
		wantApplies int
	}{
		{
			name: "the latest of several statuses set before a write is the one written, once",
			seed: reg(), uid: "uid-1",
			sets:        []map[string]string{{StateAnnotation: "Pending"}, {StateAnnotation: "Synced", CAHashAnnotation: "abc"}},
			want:        map[string]string{StateAnnotation: "Synced", CAHashAnnotation: "abc"},
			wantApplies: 1,
		},
		{
			name: "a failed write is retried until it lands",
			seed: reg(), uid: "uid-1", failApplies: 2,
			sets:        []map[string]string{{StateAnnotation: "Synced"}},
			want:        map[string]string{StateAnnotation: "Synced"},
			wantApplies: 3,
		},
		{
			name:        "a registration deleted since its sync is not created again",
			uid:         "uid-1",
			sets:        []map[string]string{{StateAnnotation: "Synced"}},
			wantApplies: 0,
		},
		{
			name: "a registration made again under the same name does not get the old one's status",
			seed: reg(), uid: "uid-0",
			sets:        []map[string]string{{StateAnnotation: "Unreachable"}},
			want:        map[string]string{},
			wantApplies: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme.New())
			if tc.seed != nil {
				b = b.WithObjects(tc.seed)
			}
			var applies atomic.Int32
			fails := tc.failApplies
			c := b.WithInterceptorFuncs(interceptor.Funcs{
				Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
					applies.Add(1)
					if fails > 0 {
						fails--
						return errors.New("apiserver away")
					}
					return c.Apply(ctx, obj, opts...)
				},
			}).Build()
			w := newStatusWriter(c, 1, 0)
			for _, ann := range tc.sets {
				w.set(key, tc.uid, ann)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { _ = w.Start(ctx); close(done) }()
			err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
				return w.queue.Len() == 0 && int(applies.Load()) >= tc.wantApplies, nil
			})
			time.Sleep(50 * time.Millisecond) // anything more would come now
			cancel()
			<-done
			if err != nil {
				t.Fatalf("writes did not settle: %v", err)
			}
			if got := int(applies.Load()); got != tc.wantApplies {
				t.Errorf("applies = %d, want %d", got, tc.wantApplies)
			}
			var got corev1.Secret
			err = c.Get(t.Context(), key, &got)
			if tc.want == nil {
				if !apierrors.IsNotFound(err) {
					t.Fatalf("registration exists afterwards (err %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], v)
				}
			}
			if len(tc.want) == 0 && len(got.Annotations) != 0 {
				t.Errorf("annotations = %v, want none", got.Annotations)
			}
		})
	}
}

func TestOnlyStatusChanged(t *testing.T) {
	base := func() *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "relay-pki-system", Name: "workload-1", UID: "uid-1", ResourceVersion: "1",
				Labels:      map[string]string{ClusterLabel: "workload-1"},
				Annotations: map[string]string{NamespaceAnnotation: "gloo-mesh", StateAnnotation: "Unreachable", MessageAnnotation: "connect: refused"},
			},
			Data: map[string][]byte{KubeconfigKey: []byte("kubeconfig")},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(s *corev1.Secret)
		want   bool
	}{
		{"a new state, message, CA hash and time is the controller's own output", func(s *corev1.Secret) {
			s.ResourceVersion = "2"
			s.Annotations[StateAnnotation], s.Annotations[MessageAnnotation] = "Synced", ""
			s.Annotations[CAHashAnnotation], s.Annotations[SyncedAtAnnotation] = "abc", "2026-12-04T00:00:00Z"
		}, true},
		{"a new kubeconfig is input", func(s *corev1.Secret) { s.Data[KubeconfigKey] = []byte("other") }, false},
		{"a new target namespace is input", func(s *corev1.Secret) { s.Annotations[NamespaceAnnotation] = "other" }, false},
		{"a relabelled cluster is input", func(s *corev1.Secret) { s.Labels[ClusterLabel] = "renamed" }, false},
		{"a deletion is input", func(s *corev1.Secret) { now := metav1.Now(); s.DeletionTimestamp = &now }, false},
		{"a finalizer is input", func(s *corev1.Secret) { s.Finalizers = []string{CleanupFinalizer} }, false},
		{"a registration made again under the same name is input", func(s *corev1.Secret) { s.UID = "uid-2" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, changed := base(), base()
			tc.change(changed)
			if got := onlyStatusChanged(old, changed); got != tc.want {
				t.Errorf("onlyStatusChanged = %v, want %v", got, tc.want)
			}
		})
	}
}

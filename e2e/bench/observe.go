package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	stdsync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// observer records, from the bench's own watches, when each namespace of
// each watched Secret name first held each value. Latency is read from
// these times, never from polling.
type observer struct {
	mu     stdsync.Mutex
	first  map[string]map[string]map[[32]byte]time.Time // name -> namespace -> value -> first seen
	latest map[string][]byte                            // name/namespace -> value
}

// watchSecret watches every Secret called name in cs, in all namespaces,
// recording data[key].
func (o *observer) watchSecret(ctx context.Context, cs kubernetes.Interface, name, key string) toolscache.InformerSynced {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return cs.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return cs.CoreV1().Secrets(metav1.NamespaceAll).Watch(ctx, opts)
		},
	}
	inf := toolscache.NewSharedIndexInformerWithOptions(lw, &corev1.Secret{}, toolscache.SharedIndexInformerOptions{})
	seen := func(obj any) {
		if s, ok := obj.(*corev1.Secret); ok {
			o.record(name, s.Namespace, s.Data[key], time.Now())
		}
	}
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: seen, UpdateFunc: func(_, obj any) { seen(obj) },
	})
	go inf.RunWithContext(ctx)
	return inf.HasSynced
}

func (o *observer) record(name, ns string, value []byte, at time.Time) {
	h := sha256.Sum256(value)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.first == nil {
		o.first = map[string]map[string]map[[32]byte]time.Time{}
		o.latest = map[string][]byte{}
	}
	o.latest[name+"/"+ns] = value
	if o.first[name] == nil {
		o.first[name] = map[string]map[[32]byte]time.Time{}
	}
	if o.first[name][ns] == nil {
		o.first[name][ns] = map[[32]byte]time.Time{}
	}
	if _, ok := o.first[name][ns][h]; !ok {
		o.first[name][ns][h] = at
	}
}

// arrivals returns, for each namespace, when it first held value, and the
// namespaces that have not yet.
func (o *observer) arrivals(name string, namespaces []string, value []byte) (map[string]time.Time, []string) {
	h := sha256.Sum256(value)
	o.mu.Lock()
	defer o.mu.Unlock()
	got := make(map[string]time.Time, len(namespaces))
	var missing []string
	for _, ns := range namespaces {
		if at, ok := o.first[name][ns][h]; ok {
			got[ns] = at
		} else {
			missing = append(missing, ns)
		}
	}
	return got, missing
}

// waitAll waits until every namespace has held value and returns the
// latency of each from start.
func (o *observer) waitAll(ctx context.Context, name string, namespaces []string, value []byte, start time.Time, timeout time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, missing := o.arrivals(name, namespaces, value)
		if len(missing) == 0 {
			lat := make([]time.Duration, 0, len(got))
			for _, at := range got {
				lat = append(lat, max(at.Sub(start), 0))
			}
			slices.Sort(lat)
			return lat, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("secret %s: %d of %d namespaces did not receive the new value within %s (first: %s)", name, len(missing), len(namespaces), timeout, missing[0])
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// observed is a value and when it was first seen.
type observed struct {
	value []byte
	at    time.Time
}

// waitNew waits until the Secret name in namespace ns holds a value other
// than old: what the management cluster publishes, and clusters must then
// receive.
func (o *observer) waitNew(ctx context.Context, name, ns string, old []byte, timeout time.Duration) (observed, error) {
	deadline := time.Now().Add(timeout)
	for {
		o.mu.Lock()
		v, ok := o.latest[name+"/"+ns]
		var at time.Time
		if ok {
			at = o.first[name][ns][sha256.Sum256(v)]
		}
		o.mu.Unlock()
		if ok && string(v) != string(old) {
			return observed{value: v, at: at}, nil
		}
		if time.Now().After(deadline) {
			return observed{}, fmt.Errorf("secret %s/%s did not change within %s", ns, name, timeout)
		}
		select {
		case <-ctx.Done():
			return observed{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

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

// observer records, from the bench's own watches, every value each
// namespace's copy of each watched Secret name took and when the watch
// delivered it. Latency is read from these times, never from polling.
type observer struct {
	mu      stdsync.Mutex
	history map[string][]sighting // name/namespace -> values in the order seen
}

type sighting struct {
	hash  [32]byte
	value []byte
	at    time.Time
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
	if o.history == nil {
		o.history = map[string][]sighting{}
	}
	k := name + "/" + ns
	if hist := o.history[k]; len(hist) > 0 && hist[len(hist)-1].hash == h {
		return // an update that left this key alone
	}
	o.history[k] = append(o.history[k], sighting{hash: h, value: value, at: at})
}

// arrivals returns, for each namespace, when it first held value at or
// after since, and the namespaces that have not yet.
func (o *observer) arrivals(name string, namespaces []string, value []byte, since time.Time) (map[string]time.Time, []string) {
	h := sha256.Sum256(value)
	o.mu.Lock()
	defer o.mu.Unlock()
	got := make(map[string]time.Time, len(namespaces))
	var missing []string
	for _, ns := range namespaces {
		found := false
		for _, s := range o.history[name+"/"+ns] {
			if s.hash == h && !s.at.Before(since) {
				got[ns], found = s.at, true
				break
			}
		}
		if !found {
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
		got, missing := o.arrivals(name, namespaces, value, start)
		if len(missing) == 0 {
			lat := make([]time.Duration, 0, len(got))
			for _, at := range got {
				lat = append(lat, at.Sub(start))
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

// waitNew waits until the Secret name in namespace ns takes a value other
// than old: what the management cluster publishes, and clusters must then
// receive.
func (o *observer) waitNew(ctx context.Context, name, ns string, old []byte, timeout time.Duration) (observed, error) {
	deadline := time.Now().Add(timeout)
	for {
		o.mu.Lock()
		hist := o.history[name+"/"+ns]
		var last sighting
		if len(hist) > 0 {
			last = hist[len(hist)-1]
		}
		o.mu.Unlock()
		if last.value != nil && string(last.value) != string(old) {
			return observed{value: last.value, at: last.at}, nil
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

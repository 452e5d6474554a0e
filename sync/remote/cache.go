// Package remote keeps one connection per registered workload cluster: a
// client built strictly from the registration's kubeconfig and two narrow
// watches, one per secret relay-pki manages there, so that an edited or
// deleted copy is seen at once without caching any other Secret. It follows
// cluster-api's clustercache: connect on demand, a typed "not connected"
// error, no discovery, and a change of kubeconfig replaces the connection.
package remote

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	stdsync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// ErrNotConnected means the cluster has no live connection.
var ErrNotConnected = errors.New("not connected")

// Target is what a registration asks for: where to connect and which
// secrets to watch in which namespace.
type Target struct {
	Kubeconfig  []byte
	Namespace   string
	SecretNames []string
}

// Cluster is a live connection to one workload cluster.
type Cluster struct {
	Key       string
	Namespace string
	// Secrets reads and writes Secrets in Namespace.
	Secrets corev1client.SecretInterface
	// Namespaces creates the target namespace when it is missing.
	Namespaces corev1client.NamespaceInterface

	hash    [32]byte
	names   []string // the watched secrets, in the registration's order
	secrets map[string]*secretCache
	cancel  context.CancelFunc
	http    *http.Client

	mu        stdsync.Mutex
	lastError error
}

// Cached returns the watched Secret name as the cluster last reported it, or
// nil when it does not exist there.
func (c *Cluster) Cached(name string) (*corev1.Secret, error) {
	sc, ok := c.secrets[name]
	if !ok {
		return nil, fmt.Errorf("secret %s is not watched", name)
	}
	obj, exists, err := sc.store.GetByKey(c.Namespace + "/" + name)
	if err != nil || !exists {
		return nil, err
	}
	return obj.(*corev1.Secret), nil
}

// WatchError is the last list or watch failure since the cluster last
// answered, or nil: a stopped apiserver shows up here without any probe.
func (c *Cluster) WatchError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastError
}

func (c *Cluster) setWatchError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastError = err
}

// Probe asks the cluster for one watched secret by name: it proves the
// address, the credentials and the permission relay-pki needs, in one
// request. It clears the watch error when it succeeds.
func (c *Cluster) Probe(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Always the same secret: a probe of a random one made the failure
	// message, and so the registration's status, differ between attempts.
	for _, name := range c.names {
		_, err := c.Secrets.List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), Limit: 1})
		if err != nil {
			return err
		}
		break
	}
	c.setWatchError(nil)
	return nil
}

// waitListed waits until every watched secret has been listed once.
func (c *Cluster) waitListed(ctx context.Context) bool {
	for _, sc := range c.secrets {
		select {
		case <-sc.listed:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// secretCache is the store a reflector keeps one watched secret in. It
// drops managed fields (only data and metadata are compared) and calls
// onChange for every change the cluster reports.
type secretCache struct {
	store    toolscache.Store
	onChange func()
	listed   chan struct{}
	once     stdsync.Once
}

func newSecretCache(onChange func()) *secretCache {
	return &secretCache{store: toolscache.NewStore(toolscache.MetaNamespaceKeyFunc), onChange: onChange, listed: make(chan struct{})}
}

func stripSecret(obj any) any {
	if s, ok := obj.(*corev1.Secret); ok {
		s.ManagedFields = nil
	}
	return obj
}

func (s *secretCache) Add(obj any) error {
	err := s.store.Add(stripSecret(obj))
	s.onChange()
	return err
}

func (s *secretCache) Update(obj any) error {
	err := s.store.Update(stripSecret(obj))
	s.onChange()
	return err
}

func (s *secretCache) Delete(obj any) error {
	err := s.store.Delete(obj)
	s.onChange()
	return err
}

// Replace is a (re)list. The first makes the connection usable and needs
// no notification: Connect's caller reads the secrets next. A later one
// follows a broken watch, during which anything may have changed.
func (s *secretCache) Replace(list []any, rv string) error {
	for i := range list {
		list[i] = stripSecret(list[i])
	}
	err := s.store.Replace(list, rv)
	first := false
	s.once.Do(func() { first = true; close(s.listed) })
	if !first {
		s.onChange()
	}
	return err
}

func (s *secretCache) Resync() error { return nil }

// Cache holds the connections, keyed by registration.
type Cache struct {
	policy         KubeconfigPolicy
	connectTimeout time.Duration
	// onChange is called with a registration key when one of its watched
	// secrets changes or its watch fails.
	onChange func(key string)

	mu       stdsync.Mutex
	clusters map[string]*Cluster
	ctx      context.Context
}

// NewCache returns an empty cache; Start must run before Connect.
func NewCache(policy KubeconfigPolicy, connectTimeout time.Duration, onChange func(key string)) *Cache {
	return &Cache{policy: policy, connectTimeout: connectTimeout, onChange: onChange, clusters: map[string]*Cluster{}}
}

// Start implements manager.Runnable: connections live as long as ctx.
func (c *Cache) Start(ctx context.Context) error {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	<-ctx.Done()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, cl := range c.clusters {
		cl.close()
		delete(c.clusters, key)
	}
	return nil
}

// NeedLeaderElection: only the leader talks to workload clusters.
func (c *Cache) NeedLeaderElection() bool { return true }

// Get returns the live connection for key, or ErrNotConnected.
func (c *Cache) Get(key string) (*Cluster, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clusters[key]; ok {
		return cl, nil
	}
	return nil, ErrNotConnected
}

// Connect returns the connection for key, making a new one when there is
// none or the target changed. A new connection is usable only once its
// watches have listed both secrets, within the connect timeout.
func (c *Cache) Connect(ctx context.Context, key string, t Target) (*Cluster, error) {
	hash := targetHash(t)
	c.mu.Lock()
	root := c.ctx
	if cl, ok := c.clusters[key]; ok {
		if cl.hash == hash {
			c.mu.Unlock()
			return cl, nil
		}
		cl.close()
		delete(c.clusters, key)
	}
	c.mu.Unlock()
	if root == nil {
		return nil, errors.New("remote cluster cache is not started")
	}

	cfg, err := RESTConfig(t.Kubeconfig, c.policy)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "relay-pki"
	cl, err := c.newCluster(root, key, hash, cfg, t)
	if err != nil {
		return nil, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	if err := cl.Probe(waitCtx, c.connectTimeout); err != nil {
		cl.close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if !cl.waitListed(waitCtx) {
		cl.close()
		if err := cl.WatchError(); err != nil {
			return nil, fmt.Errorf("connect: list secrets: %w", err)
		}
		return nil, fmt.Errorf("connect: secrets not listed within %s", c.connectTimeout)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.clusters[key]; ok { // a concurrent Connect won
		cl.close()
		return old, nil
	}
	c.clusters[key] = cl
	return cl, nil
}

// Disconnect closes and forgets the connection for key.
func (c *Cache) Disconnect(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clusters[key]; ok {
		cl.close()
		delete(c.clusters, key)
	}
}

// Len is the number of live connections.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clusters)
}

func (c *Cache) newCluster(root context.Context, key string, hash [32]byte, cfg *rest.Config, t Target) (*Cluster, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, &InvalidKubeconfigError{Reason: err.Error()}
	}
	core, err := corev1client.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, &InvalidKubeconfigError{Reason: err.Error()}
	}
	ctx, cancel := context.WithCancel(root)
	cl := &Cluster{
		Key: key, Namespace: t.Namespace, hash: hash, cancel: cancel, http: httpClient,
		Secrets: core.Secrets(t.Namespace), Namespaces: core.Namespaces(),
		secrets: map[string]*secretCache{}, names: t.SecretNames,
	}
	for _, name := range t.SecretNames {
		// One reflector per name, selected by field: that is all a Role
		// restricted to these names (resourceNames) lets relay-pki list and
		// watch, and it caches no other Secret of the cluster. A bare
		// reflector feeding a store, not a shared informer: with hundreds
		// of clusters an informer's five goroutines and 16 KiB event buffer
		// per watch were most of the controller's memory.
		selector := fields.OneTermEqualSelector("metadata.name", name).String()
		// Every list and watch call reports whether the cluster answered:
		// a stopped apiserver breaks the watch and the reflector's retries
		// are refused. That is the health check, at no extra request.
		lw := &toolscache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = selector
				obj, err := cl.Secrets.List(ctx, o)
				c.observe(ctx, cl, err)
				return obj, err
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = selector
				w, err := cl.Secrets.Watch(ctx, o)
				c.observe(ctx, cl, err)
				return w, err
			},
		}
		sc := newSecretCache(func() { c.onChange(key) })
		r := toolscache.NewReflectorWithOptions(lw, &corev1.Secret{}, sc, toolscache.ReflectorOptions{
			Name: "relay-pki/" + key + "/" + name, TypeDescription: "*v1.Secret",
		})
		cl.secrets[name] = sc
		go r.RunWithContext(ctx)
	}
	return cl, nil
}

// observe records whether a call to the cluster succeeded and, when that
// changes, asks for the cluster to be reconciled: once when it goes away,
// once when it is back.
func (c *Cache) observe(ctx context.Context, cl *Cluster, err error) {
	if ctx.Err() != nil {
		return // the connection is being closed, not failing
	}
	c.mu.Lock()
	current := c.clusters[cl.Key] == cl
	c.mu.Unlock()
	cl.mu.Lock()
	changed := (cl.lastError == nil) != (err == nil)
	cl.lastError = err
	cl.mu.Unlock()
	// Only a connection in use asks for a reconcile: a failing Connect
	// returns its error to the reconcile, which backs off; a notification
	// from it would start the next attempt at once, a hot loop.
	if changed && current {
		c.onChange(cl.Key)
	}
}

func (cl *Cluster) close() {
	cl.cancel()
	cl.http.CloseIdleConnections()
}

func targetHash(t Target) [32]byte {
	h := sha256.New()
	h.Write(t.Kubeconfig)
	h.Write([]byte{0})
	h.Write([]byte(t.Namespace))
	for _, n := range t.SecretNames {
		h.Write([]byte{0})
		h.Write([]byte(n))
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/relay-pki/relay-pki/internal/scheme"
)

// Starting kube-apiserver on 2 busy cores takes longer than envtest's 20 s
// default, more so when several start at once.
// kube-apiserver drains open watches before it exits on SIGTERM, which with
// a controller watching takes longer than a test should wait; envtest then
// kills it, which is what a test of an outage wants anyway.
const (
	startTimeout = 3 * time.Minute
	stopTimeout  = 5 * time.Second
)

// ControlPlane is one named cluster: etcd and kube-apiserver processes.
type ControlPlane struct {
	Name string
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Client is a controller-runtime client on Config with relay-pki's scheme.
	Client client.Client
	// KubeconfigPath is an admin kubeconfig file for kubectl and for
	// processes such as cert-manager's controller.
	KubeconfigPath string
	// Kubeconfig is the same kubeconfig's content.
	Kubeconfig []byte

	env *envtest.Environment
	dir string
	mu  sync.Mutex // serialises Stop and Start
	up  bool
}

// StartControlPlane starts etcd and kube-apiserver under dir, installs the
// CRDs in crdDirs and writes an admin kubeconfig. Process output goes to
// files in dir so that a failure can be read afterwards.
func StartControlPlane(name, dir string, tools Tools, crdDirs ...string) (*ControlPlane, error) {
	dir, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return nil, err
	}
	apiserverPath, err := withParentDeathSignal(filepath.Join(dir, "bin"), "kube-apiserver", tools.KubeAPIServer)
	if err != nil {
		return nil, err
	}
	etcdPath, err := withParentDeathSignal(filepath.Join(dir, "bin"), "etcd", tools.Etcd)
	if err != nil {
		return nil, err
	}
	logs, err := os.Create(filepath.Join(dir, "control-plane.log"))
	if err != nil {
		return nil, err
	}

	env := &envtest.Environment{
		CRDDirectoryPaths:        crdDirs,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
	}
	// Fixed folders (not envtest's temporary ones) keep the serving
	// certificates, client CA and data across a restart, so kubeconfigs
	// handed out before a restart still work after it.
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcdPath, DataDir: filepath.Join(dir, "etcd"), Out: logs, Err: logs}
	api := env.ControlPlane.GetAPIServer()
	api.Path = apiserverPath
	api.CertDir = filepath.Join(dir, "pki")
	api.Out, api.Err = logs, logs
	for _, d := range []string{env.ControlPlane.Etcd.DataDir, api.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}

	cp := &ControlPlane{Name: name, env: env, dir: dir}
	track(cp)
	cfg, err := env.Start()
	if err != nil {
		_ = cp.Stop()
		return nil, fmt.Errorf("start control plane %s (logs in %s): %w", name, logs.Name(), err)
	}
	cp.up = true
	cp.Config = cfg
	cp.Kubeconfig = env.KubeConfig
	cp.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.KubeconfigPath, env.KubeConfig, 0o600); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	if cp.Client, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	return cp, nil
}

// AddUser returns a kubeconfig for a new user of the control plane, with a
// client certificate of its own signed by the apiserver's client CA. The
// benchmark gives every logical cluster its own user, so each has its own
// TLS connection, as separate clusters would.
func (cp *ControlPlane) AddUser(name string, groups ...string) ([]byte, error) {
	u, err := cp.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("add user %s to %s: %w", name, cp.Name, err)
	}
	return u.KubeConfig()
}

// Dir is the control plane's working folder (logs, kubeconfig, data).
func (cp *ControlPlane) Dir() string { return cp.dir }

// StopProcesses stops kube-apiserver and etcd but keeps their data,
// certificates and ports, as a cluster outage would.
func (cp *ControlPlane) StopProcesses() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if !cp.up {
		return nil
	}
	cp.up = false
	return errors.Join(killedIsStopped(cp.env.ControlPlane.APIServer.Stop()), killedIsStopped(cp.env.ControlPlane.Etcd.Stop()))
}

// killedIsStopped: envtest reports a process it had to SIGKILL after the
// stop timeout as an error, but the process is gone all the same.
func killedIsStopped(err error) error {
	if err != nil && strings.Contains(err.Error(), "timeout waiting for process") {
		return nil
	}
	return err
}

// StartProcesses starts a stopped control plane again on the same address
// with the same data and credentials.
func (cp *ControlPlane) StartProcesses() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.up {
		return nil
	}
	if err := cp.env.ControlPlane.Etcd.Start(); err != nil {
		return fmt.Errorf("restart etcd of %s: %w", cp.Name, err)
	}
	if err := cp.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("restart kube-apiserver of %s: %w", cp.Name, err)
	}
	cp.up = true
	return nil
}

// Stop stops the control plane for good and removes nothing: the folder is
// the caller's to keep (for logs) or delete.
func (cp *ControlPlane) Stop() error {
	defer untrack(cp)
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.up = false
	return killedIsStopped(cp.env.Stop())
}

// Healthy reports whether the apiserver answers /readyz.
func (cp *ControlPlane) Healthy(ctx context.Context) error {
	cfg := rest.CopyConfig(cp.Config)
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

// withParentDeathSignal writes an executable wrapper that runs target with
// SIGKILL as its parent-death signal. envtest starts its processes in their
// own process group, so neither a Ctrl-C nor the death of the test binary
// would reach them otherwise.
func withParentDeathSignal(dir, name, target string) (string, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	script := fmt.Sprintf("#!/bin/sh\nexec setpriv --pdeathsig KILL -- %q \"$@\"\n", abs)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return "", err
	}
	return path, nil
}

// LogTail returns the last n bytes of the control plane's process output.
func (cp *ControlPlane) LogTail(n int64) string {
	f, err := os.Open(filepath.Join(cp.dir, "control-plane.log"))
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

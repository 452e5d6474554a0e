package framework

import (
	"fmt"
	"path/filepath"
)

// StartCertManager runs cert-manager's controllers against cp as a separate
// process, as a cluster's cert-manager Deployment would.
func StartCertManager(cp *ControlPlane, tools Tools, extraArgs ...string) (*Process, error) {
	args := append([]string{"--kubeconfig", cp.KubeconfigPath, "--cluster-resource-namespace", "kube-system"}, extraArgs...)
	p, err := StartProcess("cert-manager-controller", cp.Dir(), tools.CertManagerController, nil, args...)
	if err != nil {
		return nil, fmt.Errorf("cert-manager on %s: %w", cp.Name, err)
	}
	return p, nil
}

// LogPath is where a process started for cp writes its output.
func LogPath(cp *ControlPlane, name string) string { return filepath.Join(cp.Dir(), name+".log") }

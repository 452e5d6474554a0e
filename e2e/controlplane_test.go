//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/internal/scheme"
)

// Later tests take remote clusters down and bring them back; a restart must
// keep the address, the data and the credentials handed out before it.
func TestControlPlaneRestartKeepsAddressDataAndCredentials(t *testing.T) {
	cp := RunControlPlanes(t, "remote")["remote"]

	// A client built from the kubeconfig file, as a registration would be.
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	marker := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survives-restart", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if err := c.Create(t.Context(), marker); err != nil {
		t.Fatal(err)
	}

	if err := cp.StopProcesses(); err != nil {
		t.Fatal(err)
	}
	if err := cp.Healthy(t.Context()); err == nil {
		t.Fatal("the control plane still answers after StopProcesses")
	}
	start := time.Now()
	if err := cp.StartProcesses(); err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane restarted in %s", time.Since(start).Round(time.Millisecond))

	var got corev1.ConfigMap
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return c.Get(ctx, client.ObjectKeyFromObject(marker), &got) == nil, nil
	})
	if err != nil {
		t.Fatalf("the pre-restart kubeconfig cannot read the pre-restart data: %v", err)
	}
	if got.Data["k"] != "v" {
		t.Errorf("data after restart = %v", got.Data)
	}
}

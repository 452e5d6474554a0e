package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// floorWorkers are the numbers of server-side applies in flight the floor
// is timed with; the fastest counts, so the floor is as fast as this
// machine allows, whatever suits it.
var floorWorkers = []int{8, 32, 128}

// applyAll is the floor: the bench itself server-side applies name with
// data[key]=value into every cluster's namespace with that many workers,
// over one warm admin connection per remote apiserver.
func applyAll(ctx context.Context, remotes []kubernetes.Interface, clusters []cluster, name, key string, value []byte, workers int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, c := range clusters {
		g.Go(func() error {
			ac := corev1ac.Secret(name, c.namespace).
				WithLabels(map[string]string{"relay-pki.io/bench": "floor"}).
				WithData(map[string][]byte{key: value})
			_, err := remotes[c.plane].CoreV1().Secrets(c.namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
			if err != nil {
				return fmt.Errorf("floor apply %s/%s on %s: %w", c.namespace, name, c.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// kubectlLoop is the seed's way: for each cluster, in a shell loop, the
// secret is rendered with `kubectl create secret generic --dry-run=client
// -o yaml` and piped to `kubectl apply -f-`, as the prerequisites page's
// script does. The value is passed in a file, so it is not on any command
// line.
const kubectlLoop = `set -euo pipefail
while read -r kubeconfig namespace; do
  kubectl --kubeconfig "$kubeconfig" -n "$namespace" create secret generic "$NAME" \
    --from-file="$KEY=$VALUE_FILE" --dry-run=client -o yaml \
    | kubectl --kubeconfig "$kubeconfig" -n "$namespace" apply -f- >/dev/null
done < "$CLUSTERS"
`

func runKubectlLoop(ctx context.Context, kubectl, dir string, clusters []cluster, name, key string, value []byte) error {
	var list strings.Builder
	for _, c := range clusters {
		fmt.Fprintf(&list, "%s %s\n", c.kubeconfig, c.namespace)
	}
	listFile := filepath.Join(dir, "clusters.txt")
	valueFile := filepath.Join(dir, "value")
	if err := os.WriteFile(listFile, []byte(list.String()), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(valueFile, value, 0o600); err != nil {
		return err
	}
	defer os.Remove(valueFile)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	// kubectl from the Makefile's cache first on PATH; HOME keeps its
	// discovery cache warm across the loop, as on a user's machine.
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(kubectl, filepath.Join(bin, "kubectl")); err != nil && !os.IsExist(err) {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", kubectlLoop)
	cmd.Env = append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"), "HOME="+dir,
		"NAME="+name, "KEY="+key, "VALUE_FILE="+valueFile, "CLUSTERS="+listFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl loop: %w: %s", err, tail(string(out), 2000))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

package options

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Kube selects the management cluster the kubectl way.
type Kube struct {
	Kubeconfig string
	Context    string
	// Remote marks the flags of a workload cluster (--remote-kubeconfig,
	// --remote-context), for error messages.
	Remote bool
}

// AddFlags registers --kubeconfig and --context.
func (o *Kube) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the management cluster (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&o.Context, "context", "", "kubeconfig context to use (default: the current context)")
}

// RESTConfig resolves the flags the way kubectl does.
func (o *Kube) RESTConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context}).ClientConfig()
	if err != nil {
		if o.Remote {
			return nil, fmt.Errorf("workload cluster (--remote-kubeconfig %q --remote-context %q): %w", o.Kubeconfig, o.Context, err)
		}
		return nil, fmt.Errorf("management cluster (--kubeconfig %q --context %q): %w", o.Kubeconfig, o.Context, err)
	}
	return cfg, nil
}

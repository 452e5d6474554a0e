// Package options holds the flag groups of relay-pki's commands. Each group
// adds its flags to a FlagSet and turns them into something validated in
// Complete, so commands stay thin and errors name the flag at fault.
package options

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/relay-pki/relay-pki/config"
)

// Config is the configuration file and the flags that override it.
type Config struct {
	File         string
	Namespace    string
	IssuerKind   string
	IssuerName   string
	IssuerGroup  string
	IstioIngress bool

	fs *pflag.FlagSet
}

// AddFlags registers the configuration flags on fs.
func (o *Config) AddFlags(fs *pflag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.File, "config", "", "relay-pki configuration file (apiVersion relay-pki.io/v1alpha1, kind Config); '-' reads standard input. Without it the defaults reproduce Gloo Mesh's documented names.")
	fs.StringVarP(&o.Namespace, "namespace", "n", "", "namespace of the relay PKI, overriding the file's namespace (default gloo-mesh)")
	fs.StringVar(&o.IssuerName, "issuer-name", "", "sign with this existing issuer instead of a self-signed root (overrides the file's issuer)")
	fs.StringVar(&o.IssuerKind, "issuer-kind", "", "kind of --issuer-name: Issuer, ClusterIssuer, or an out-of-tree issuer's kind (default Issuer)")
	fs.StringVar(&o.IssuerGroup, "issuer-group", "", "API group of --issuer-name (default cert-manager.io)")
	fs.BoolVar(&o.IstioIngress, "istio-ingress", false, "also render the Istio Gateway and VirtualService that pass relay TLS through the ingress gateway")
}

// Complete reads the file, applies the flags, defaults and validates.
func (o *Config) Complete() (*config.Config, error) {
	c := &config.Config{APIVersion: config.APIVersion, Kind: config.Kind}
	if o.File != "" {
		var err error
		if c, err = config.ReadFile(o.File); err != nil {
			return nil, err
		}
	}
	if o.changed("namespace") {
		c.Namespace = o.Namespace
	}
	if o.IssuerName == "" && (o.IssuerKind != "" || o.IssuerGroup != "") {
		return nil, fmt.Errorf("--issuer-kind and --issuer-group need --issuer-name: name the issuer that signs the relay certificates")
	}
	if o.IssuerName != "" {
		c.Issuer = config.Issuer{IssuerRef: &config.IssuerRef{Name: o.IssuerName, Kind: o.IssuerKind, Group: o.IssuerGroup}}
	}
	if o.changed("istio-ingress") {
		c.IstioIngress.Enabled = o.IstioIngress
	}
	if err := config.Complete(c); err != nil {
		if o.File != "" {
			return nil, fmt.Errorf("configuration %q (with flags applied): %w", o.File, err)
		}
		return nil, err
	}
	return c, nil
}

func (o *Config) changed(name string) bool {
	return o.fs != nil && o.fs.Changed(name)
}

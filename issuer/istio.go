package issuer

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
)

// IstioAPIVersion is served by every Istio release from 1.5 to today, unlike
// v1 (1.22+); the seed's v1alpha3 is the same schema.
const IstioAPIVersion = "networking.istio.io/v1beta1"

// IstioIngress returns the seed's Gateway and VirtualService: TLS passes
// through the ingress gateway untouched (mode PASSTHROUGH) and is routed by
// SNI to enterprise-networking, which terminates it with the relay server
// certificate. Built as unstructured objects so that relay-pki does not
// depend on Istio's Go API.
func IstioIngress(c *config.Config) []client.Object {
	in := c.IstioIngress
	selector := map[string]any{}
	for k, v := range in.GatewaySelector {
		selector[k] = v
	}
	meta := func() map[string]any {
		return map[string]any{"name": in.Name, "namespace": in.Namespace, "labels": map[string]any{ManagedByLabel: ManagedBy}}
	}
	gateway := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": IstioAPIVersion,
		"kind":       "Gateway",
		"metadata":   meta(),
		"spec": map[string]any{
			"selector": selector,
			"servers": []any{map[string]any{
				"port":  map[string]any{"number": int64(in.Port), "name": "https", "protocol": "HTTPS"},
				"tls":   map[string]any{"mode": "PASSTHROUGH"},
				"hosts": []any{in.Host},
			}},
		},
	}}
	virtualService := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": IstioAPIVersion,
		"kind":       "VirtualService",
		"metadata":   meta(),
		"spec": map[string]any{
			"hosts":    []any{in.Host},
			"gateways": []any{in.Namespace + "/" + in.Name},
			"tls": []any{map[string]any{
				"match": []any{map[string]any{"port": int64(in.Port), "sniHosts": []any{in.Host}}},
				"route": []any{map[string]any{"destination": map[string]any{
					"host": in.DestinationHost,
					"port": map[string]any{"number": int64(in.TargetPort)},
				}}},
			}},
		},
	}}
	return []client.Object{gateway, virtualService}
}

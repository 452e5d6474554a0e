// Package manifest turns typed objects into the clean form that is both
// printed for `kubectl apply` and sent as a server-side apply patch: no
// status, no creationTimestamp, nothing relay-pki does not mean to own.
package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Clean converts obj to an unstructured object without the fields the API
// server owns. A typed object marshals an empty status and a null
// creationTimestamp; sending those in an apply patch would claim them.
func Clean(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %s %s/%s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: m}
	delete(u.Object, "status")
	for _, f := range []string{"creationTimestamp", "managedFields", "resourceVersion", "uid", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	return u, nil
}

// CleanAll applies Clean to each object, keeping the order.
func CleanAll(objs []client.Object) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		u, err := Clean(o)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// WriteYAML writes the objects as one multi-document YAML stream. Nothing is
// written unless every object marshals, so a pipe into kubectl never gets
// half a PKI.
func WriteYAML(w io.Writer, objs []client.Object) error {
	clean, err := CleanAll(objs)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, u := range clean {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("marshal %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// WriteJSON writes the objects as one v1 List, which kubectl apply accepts.
func WriteJSON(w io.Writer, objs []client.Object) error {
	clean, err := CleanAll(objs)
	if err != nil {
		return err
	}
	items := make([]map[string]any, 0, len(clean))
	for _, u := range clean {
		items = append(items, u.Object)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

// Contains reports whether every field set in want has the same value in
// live. Lists must match whole. It tells whether an apply would change
// anything without sending one: fields another manager added to live (a
// webhook's defaults, cert-manager's status) do not count.
func Contains(live, want map[string]any) bool {
	for k, w := range want {
		l, ok := live[k]
		if !ok {
			return false
		}
		if !containsValue(l, w) {
			return false
		}
	}
	return true
}

func containsValue(l, w any) bool {
	switch w := w.(type) {
	case map[string]any:
		lm, ok := l.(map[string]any)
		return ok && Contains(lm, w)
	case []any:
		ll, ok := l.([]any)
		if !ok || len(ll) != len(w) {
			return false
		}
		for i := range w {
			if !containsValue(ll[i], w[i]) {
				return false
			}
		}
		return true
	default:
		return fmt.Sprint(l) == fmt.Sprint(w)
	}
}

// Package ssa writes relay-pki's objects with server-side apply under one
// field manager, so that a re-apply is idempotent and another manager's
// fields (cert-manager's status, a user's annotations) are left alone.
package ssa

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/manifest"
)

// FieldManager owns every field the controller (and install, which applies
// the same objects) writes.
const FieldManager = "relay-pki"

// RegisterFieldManager owns what `relay-pki register` writes. It must differ
// from FieldManager: the controller applies status annotations to the
// registration Secret as FieldManager, and an apply drops every field its
// manager owned before but left out, so a shared manager would strip the
// registration's label and kubeconfig at the first status write.
const RegisterFieldManager = "relay-pki-register"

// Apply server-side applies each object in order, taking ownership of the
// fields it sets (a hand edit of a relay-pki field is reverted, as a GitOps
// tool would).
func Apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) error {
	return ApplyAs(ctx, c, FieldManager, objs)
}

// ApplyAs is Apply under another field manager.
func ApplyAs(ctx context.Context, c client.Client, manager string, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(manager), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}

// ApplyObjects cleans typed objects (see manifest.Clean) and applies them.
func ApplyObjects(ctx context.Context, c client.Client, objs []client.Object) error {
	return ApplyObjectsAs(ctx, c, FieldManager, objs)
}

// ApplyObjectsAs is ApplyObjects under another field manager.
func ApplyObjectsAs(ctx context.Context, c client.Client, manager string, objs []client.Object) error {
	clean, err := manifest.CleanAll(objs)
	if err != nil {
		return err
	}
	return ApplyAs(ctx, c, manager, clean)
}

// Package rotate is `relay-pki rotate`: it asks the controller for a staged
// root rotation (or its abort) by writing request keys into the rotation
// ConfigMap, and replaces the identity token. The controller does the
// rotation; this package only asks and watches.
package rotate

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/relay-pki/relay-pki/config"
	"github.com/relay-pki/relay-pki/issuer"
	relaysync "github.com/relay-pki/relay-pki/sync"
	"github.com/relay-pki/relay-pki/sync/rotation"
)

// FieldManager owns the request keys; the controller owns the state keys.
const FieldManager = "relay-pki-rotate"

// TokenBytes of entropy in a new identity token, as the controller mints.
const TokenBytes = relaysync.TokenBytes

// RequestRoot asks for a root key rotation and returns the request's ID.
func RequestRoot(ctx context.Context, c client.Client, cfg *config.Config, force bool, now time.Time) (string, error) {
	if cfg.Issuer.Mode() != config.ModeSelfSigned {
		return "", fmt.Errorf("issuer mode %s: relay-pki rotates only the self-signed root it owns; with an external issuer rotate the root there and publish both roots through trustBundle.source", cfg.Issuer.Mode())
	}
	st, err := Read(ctx, c, cfg)
	if err != nil {
		return "", err
	}
	if st.Phase != rotation.Idle {
		return "", fmt.Errorf("a rotation is already in progress (phase %s): watch it with relay-pki status, or abort it with relay-pki rotate abort", st.Phase)
	}
	id := now.UTC().Format(time.RFC3339Nano)
	data := map[string]string{rotation.KeyRequestedAt: id, rotation.KeyForce: fmt.Sprint(force)}
	return id, apply(ctx, c, cfg, data)
}

// RequestAbort asks to abort the rotation in progress.
func RequestAbort(ctx context.Context, c client.Client, cfg *config.Config, now time.Time) error {
	st, err := Read(ctx, c, cfg)
	if err != nil {
		return err
	}
	switch st.Phase {
	case rotation.Idle:
		return fmt.Errorf("no rotation is in progress")
	case rotation.Switching, rotation.Grace, rotation.Retiring:
		return fmt.Errorf("phase %s: signing has switched to the new root, so the rotation can only go forward", st.Phase)
	}
	return apply(ctx, c, cfg, map[string]string{rotation.KeyAbortRequestedAt: now.UTC().Format(time.RFC3339Nano)})
}

func apply(ctx context.Context, c client.Client, cfg *config.Config, data map[string]string) error {
	ac := corev1ac.ConfigMap(relaysync.RotationConfigMap, cfg.Namespace).WithLabels(issuer.Labels(issuer.RoleRoot)).WithData(data)
	if err := c.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("write rotation request to ConfigMap %s/%s: %w", cfg.Namespace, relaysync.RotationConfigMap, err)
	}
	return nil
}

// Status is the rotation state with the request that drives it.
type Status struct {
	rotation.State
	Request rotation.Request
}

// Read returns the rotation state; no ConfigMap means Idle.
func Read(ctx context.Context, c client.Reader, cfg *config.Config) (Status, error) {
	var cm corev1.ConfigMap
	err := c.Get(ctx, client.ObjectKey{Namespace: cfg.Namespace, Name: relaysync.RotationConfigMap}, &cm)
	if err != nil && !apierrors.IsNotFound(err) {
		return Status{}, fmt.Errorf("read rotation state %s/%s: %w", cfg.Namespace, relaysync.RotationConfigMap, err)
	}
	st, err := rotation.FromData(cm.Data)
	if err != nil {
		return Status{}, err
	}
	return Status{State: st, Request: rotation.RequestFrom(cm.Data)}, nil
}

// Wait prints each phase change until the rotation with request id is done
// (Idle, having handled it), or the timeout passes.
func Wait(ctx context.Context, c client.Reader, cfg *config.Config, id string, out io.Writer, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var last string
	for {
		st, err := Read(ctx, c, cfg)
		if err == nil {
			line := string(st.Phase)
			if st.Message != "" {
				line += ": " + st.Message
			}
			if line != last {
				fmt.Fprintf(out, "  %s after %s\n", line, time.Since(start).Round(100*time.Millisecond))
				last = line
			}
			if st.Phase == rotation.Idle && st.HandledRequest == id {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rotation not complete after %s (phase %s): it continues in the controller; watch it with relay-pki status", timeout, strings.SplitN(last, ":", 2)[0])
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Token replaces the identity token with a new random one. Registered agents
// hold client certificates and do not need the token again; agents that
// register later use the new one. The token is never printed.
func Token(ctx context.Context, c client.Client, cfg *config.Config, rand io.Reader) error {
	raw := make([]byte, TokenBytes)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return fmt.Errorf("generate identity token: %w", err)
	}
	key := client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.IdentityToken.SecretName}
	token := []byte(base64.RawURLEncoding.EncodeToString(raw))
	var s corev1.Secret
	if err := c.Get(ctx, key, &s); apierrors.IsNotFound(err) {
		// Missing (and the controller could not restore it): make it.
		s = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: issuer.Labels(relaysync.RoleToken)},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{cfg.IdentityToken.Key: token},
		}
		s.Annotations = map[string]string{relaysync.ContentHashAnnotation: relaysync.ContentHash(s.Data)}
		if err := c.Create(ctx, &s, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("create identity token secret %s: %w", key, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("read identity token secret %s: %w", key, err)
	}
	patch := client.MergeFrom(s.DeepCopy())
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[cfg.IdentityToken.Key] = token
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[relaysync.ContentHashAnnotation] = relaysync.ContentHash(s.Data)
	if err := c.Patch(ctx, &s, patch); err != nil {
		return fmt.Errorf("write identity token secret %s: %w", key, err)
	}
	return nil
}

// Roots are the root slots the current rotation stage keeps (one slot, 0,
// when there is no rotation state): what install, status and verify must
// look at instead of assuming the first slot.
func Roots(ctx context.Context, c client.Reader, cfg *config.Config) (issuer.Roots, error) {
	if cfg.Issuer.Mode() != config.ModeSelfSigned {
		return issuer.SteadyRoots(0), nil
	}
	st, err := Read(ctx, c, cfg)
	if err != nil {
		return issuer.Roots{}, err
	}
	return st.Roots(), nil
}

// Package sync is relay-pki's controller: it publishes the verified trust
// bundle and the identity token in the management cluster and keeps a copy
// of both, and nothing else, in every registered workload cluster.
package sync

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"

	"github.com/relay-pki/relay-pki/issuer"
)

// Labels and annotations relay-pki reads and writes.
const (
	// ClusterLabel marks a Secret in the controller's namespace as a
	// registration; its value is the cluster's name.
	ClusterLabel = "relay-pki.io/cluster"
	// NamespaceAnnotation on a registration overrides the target namespace.
	NamespaceAnnotation = "relay-pki.io/namespace"
	// KubeconfigKey is the registration Secret key holding the kubeconfig.
	KubeconfigKey = "kubeconfig"

	// ContentHashAnnotation is the SHA-256 of a managed Secret's data, so
	// that a matching copy needs no write and a tampered one is noticed.
	ContentHashAnnotation = "relay-pki.io/content-hash"

	// Status annotations on a registration Secret.
	StateAnnotation    = "relay-pki.io/state"
	MessageAnnotation  = "relay-pki.io/message"
	CAHashAnnotation   = "relay-pki.io/synced-ca-sha256"
	SyncedAtAnnotation = "relay-pki.io/synced-at"

	// CleanupFinalizer holds a registration until its copies are removed
	// (deletionPolicy Delete only).
	CleanupFinalizer = "relay-pki.io/cleanup"

	RoleTrust issuer.Role = "trust"
	RoleToken issuer.Role = "token"
)

// State is a cluster's sync state, written to its registration.
type State string

const (
	StateSynced            State = "Synced"
	StatePending           State = "Pending"
	StateUnreachable       State = "Unreachable"
	StateConflict          State = "Conflict"
	StateInvalidKubeconfig State = "InvalidKubeconfig"
	StateForbidden         State = "Forbidden"
	StateError             State = "Error"
)

// contentHash hashes data with sorted keys, so equal content always gives
// the same hash.
func contentHash(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(data[k])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ContentHash is the content hash relay-pki stores in ContentHashAnnotation.
func ContentHash(data map[string][]byte) string { return contentHash(data) }

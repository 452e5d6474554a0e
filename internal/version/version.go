// Package version holds what the build stamps into the binary with -ldflags.
package version

import "runtime"

// Set by the Makefile: -X github.com/relay-pki/relay-pki/internal/version.Version=...
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the one-line version report of `relay-pki version`.
func String() string {
	return "relay-pki " + Version + " (commit " + Commit + ", " + runtime.Version() + ")"
}

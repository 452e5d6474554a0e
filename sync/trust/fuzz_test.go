package trust

import (
	"strings"
	"testing"
	"time"

	"github.com/relay-pki/relay-pki/internal/certinfo"
)

// FuzzVerify feeds arbitrary bundles and leaf chains to the publisher's
// gate: it must never panic, every refusal must say what was wrong, and
// whatever it accepts must be a bundle of CA certificates that every leaf
// chains to.
func FuzzVerify(f *testing.F) {
	t := &testing.T{}
	root := issue(t, "root", true, nil)
	other := issue(t, "other", true, nil)
	leaf := issue(t, "leaf", false, root)
	f.Add(root.pem, leaf.pem)
	f.Add(append(append([]byte{}, root.pem...), other.pem...), leaf.pem)
	f.Add(other.pem, leaf.pem)
	f.Add(leaf.pem, leaf.pem)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"), leaf.pem)
	f.Add([]byte{}, []byte{})
	f.Add(append(append([]byte{}, root.pem...), root.pem...), append(append([]byte{}, leaf.pem...), root.pem...))
	now := time.Now()
	f.Fuzz(func(t *testing.T, source, chain []byte) {
		b, err := Verify(source, []Leaf{{Name: "Secret fuzzed", Chain: chain}}, now)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("a refusal without a reason")
			}
			return
		}
		anchors, perr := certinfo.ParsePEM(b.PEM)
		if perr != nil || len(anchors) != len(b.Anchors) || len(anchors) == 0 {
			t.Fatalf("accepted bundle does not re-parse to its %d anchors: %v", len(b.Anchors), perr)
		}
		for _, a := range anchors {
			if !a.IsCA {
				t.Fatalf("accepted a non-CA anchor %s", a.Subject)
			}
		}
		if _, err := certinfo.VerifyChain(chain, anchors, now); err != nil {
			t.Fatalf("accepted a bundle the leaf does not chain to: %v", err)
		}
	})
}

func TestVerifyRefusesAnOversizedBundle(t *testing.T) {
	t.Parallel()
	big := make([]byte, 10<<20)
	_, err := Verify(big, nil, time.Now())
	if err == nil || !strings.Contains(err.Error(), "larger than the 1048576 byte limit") {
		t.Errorf("err = %v, want a size error", err)
	}
}

package trust

import (
	"strings"
	"testing"
	"time"

	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/testpki"
)

// FuzzVerify feeds arbitrary bundles and leaf chains to the publisher's
// gate: it must never panic, every refusal must say what was wrong, and
// whatever it accepts must be a bundle of CA certificates that every leaf
// chains to.
func FuzzVerify(f *testing.F) {
	root := testpki.MustIssue(f, "root", true, nil, testpki.Options{})
	other := testpki.MustIssue(f, "other", true, nil, testpki.Options{})
	leaf := testpki.MustIssue(f, "leaf", false, root, testpki.Options{})
	f.Add(root.PEM, leaf.PEM)
	f.Add(append(append([]byte{}, root.PEM...), other.PEM...), leaf.PEM)
	f.Add(other.PEM, leaf.PEM)
	f.Add(leaf.PEM, leaf.PEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"), leaf.PEM)
	f.Add([]byte{}, []byte{})
	f.Add(append(append([]byte{}, root.PEM...), root.PEM...), append(append([]byte{}, leaf.PEM...), root.PEM...))
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

package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestGoldenDefaultsFileRoundTrips(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("testdata", "defaults.golden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode(data)
	if err != nil {
		t.Fatalf("the documented defaults do not decode: %v", err)
	}
	if err := Complete(c); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("decoded defaults differ from Default() (-want +got):\n%s", diff)
	}
}

// FuzzDecodeValidate feeds arbitrary bytes through everything a user's file
// goes through. Any input may be refused; none may panic, and whatever is
// accepted must survive a round trip unchanged.
func FuzzDecodeValidate(f *testing.F) {
	if golden, err := os.ReadFile(filepath.Join("testdata", "defaults.golden.yaml")); err == nil {
		f.Add(golden)
	}
	for _, seed := range []string{
		"apiVersion: relay-pki.io/v1alpha1\nkind: Config\n",
		"apiVersion: relay-pki.io/v1alpha1\nkind: Config\nissuer: {issuerRef: {name: vault, kind: ClusterIssuer}}\n",
		"apiVersion: relay-pki.io/v1alpha1\nkind: Config\nissuer: {vault: {server: 'https://v:8200', path: pki/sign/r, signingPath: pki/root/sign-intermediate, auth: {kubernetes: {role: r, serviceAccountRef: {name: sa}}}}}\n",
		"apiVersion: relay-pki.io/v1alpha1\nkind: Config\nistioIngress: {enabled: true, port: 0}\nserver: {duration: 1h, renewBefore: 1h}\n",
		"bogusField: [",
		"server: {privateKey: {algorithm: Ed25519, size: -1}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		if err := Complete(c); err != nil {
			if !IsInvalid(err) {
				t.Fatalf("Complete returned %T, want *InvalidError: %v", err, err)
			}
			return
		}
		// What is accepted must also print and read back to the same thing:
		// `relay-pki render` users keep the completed file.
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted configuration: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("accepted configuration does not decode again: %v\n%s", err, out)
		}
		if err := Complete(again); err != nil {
			t.Fatalf("accepted configuration is refused after a round trip: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Fatalf("round trip changed the configuration (-first +second):\n%s", diff)
		}
	})
}

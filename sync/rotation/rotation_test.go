package rotation

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/internal/testpki"
	"github.com/relay-pki/relay-pki/issuer"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// yearLong certificates outlive every rotation the tests play from t0.
var yearLong = testpki.Options{NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * 365 * time.Hour)}

func pemOf(c *testpki.Cert) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// world plays cert-manager, the publisher and the clusters around Next: it
// carries out each plan the way the controller and cert-manager would.
type world struct {
	t           *testing.T
	now         time.Time
	slots       map[issuer.Slot]*testpki.Cert
	server      *testpki.Cert
	signing     *testpki.Cert
	signer      issuer.Slot
	published   []byte
	clusters    map[string][]byte // ca.crt each cluster holds
	unreachable map[string]bool
	request     Request
}

func newWorld(t *testing.T) *world {
	root := testpki.MustIssue(t, "root-0", true, nil, yearLong)
	w := &world{t: t, now: t0, slots: map[issuer.Slot]*testpki.Cert{0: root}, clusters: map[string][]byte{}, unreachable: map[string]bool{}}
	w.server = testpki.MustIssue(t, "server", false, root, yearLong)
	w.signing = testpki.MustIssue(t, "signing", true, root, yearLong)
	w.published = pemOf(root)
	for _, c := range []string{"workload-1", "workload-2"} {
		w.clusters[c] = w.published
	}
	return w
}

func (w *world) observed() Observed {
	o := Observed{Now: w.now, Request: w.request, SlotRoots: map[issuer.Slot]*x509.Certificate{}, GracePeriod: time.Hour, LeavesReady: true}
	for s, c := range w.slots {
		o.SlotRoots[s] = c.Cert
	}
	o.Published, _ = certinfo.ParsePEM(w.published)
	o.PublishedHash = Hash(w.published)
	o.ServerChain, o.SigningChain = pemOf(w.server), pemOf(w.signing)
	names := make([]string, 0, len(w.clusters))
	for n := range w.clusters {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		o.Clusters = append(o.Clusters, Cluster{Name: n, CAHash: Hash(w.clusters[n]), Reachable: !w.unreachable[n]})
	}
	return o
}

// apply carries a plan out: slots are minted or deleted, the bundle is
// published and synced to reachable clusters, and a change of signer
// re-issues the server and signing certificates.
func (w *world) apply(p Plan) {
	for _, s := range p.Roots.Slots {
		if w.slots[s] == nil {
			w.slots[s] = testpki.MustIssue(w.t, "root-minted", true, nil, yearLong)
		}
	}
	if p.Delete != nil {
		delete(w.slots, *p.Delete)
	}
	if p.Bundle != nil {
		w.published = p.Bundle
		for n := range w.clusters {
			if !w.unreachable[n] {
				w.clusters[n] = p.Bundle
			}
		}
	}
	if p.Roots.Signer != w.signer || p.Reissue {
		w.signer = p.Roots.Signer
		w.server = testpki.MustIssue(w.t, "server", false, w.slots[w.signer], yearLong)
		w.signing = testpki.MustIssue(w.t, "signing", true, w.slots[w.signer], yearLong)
	}
}

// noOutage checks that every reachable cluster and the management bundle
// trust the roots the server and signing certificates chain to.
func (w *world) noOutage(phase Phase) {
	w.t.Helper()
	for name, bundle := range w.clusters {
		if w.unreachable[name] {
			continue
		}
		roots, _ := certinfo.ParsePEM(bundle)
		for _, leaf := range []*testpki.Cert{w.server, w.signing} {
			if _, err := certinfo.VerifyChain(pemOf(leaf), roots, w.now); err != nil {
				w.t.Errorf("phase %s: %s would fail a handshake: %v", phase, name, err)
			}
		}
	}
}

// run steps until Idle or n steps, returning the phases seen.
func (w *world) run(s State, n int) (State, []Phase) {
	var phases []Phase
	for range n {
		p := Next(s, w.observed())
		w.apply(p)
		w.noOutage(p.State.Phase)
		if len(phases) == 0 || phases[len(phases)-1] != p.State.Phase {
			phases = append(phases, p.State.Phase)
		}
		s = p.State
		w.now = w.now.Add(20 * time.Minute)
		if s.Phase == Idle && s.HandledRequest == w.request.ID {
			break
		}
	}
	return s, phases
}

func TestARequestedRotationStagesTheNewRootWithoutAnOutage(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	oldRoot := w.slots[0]
	w.request = Request{ID: "2026-12-03T12:00:00Z"}
	s, phases := w.run(State{}, 50)
	if diff := cmp.Diff([]Phase{Minting, Distributing, Switching, Grace, Retiring, Idle}, phases); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	if s.Active != 1 {
		t.Errorf("active slot = %d, want 1", s.Active)
	}
	roots, _ := certinfo.ParsePEM(w.published)
	if len(roots) != 1 || roots[0].Equal(oldRoot.Cert) || !roots[0].Equal(w.slots[1].Cert) {
		t.Errorf("final bundle has %d roots; want only the new one", len(roots))
	}
	if _, ok := w.slots[0]; ok {
		t.Error("the old root slot was not deleted")
	}
	// A second rotation goes back to slot 0 with a fresh key.
	w.request = Request{ID: "2026-12-04T12:00:00Z"}
	s, _ = w.run(s, 50)
	if s.Active != 0 || s.Phase != Idle {
		t.Errorf("second rotation ended in %s with slot %d active", s.Phase, s.Active)
	}
	if w.slots[0].Cert.Equal(oldRoot.Cert) {
		t.Error("the second rotation reused the first root")
	}
}

func TestAnUnreachableClusterHoldsTheRotationAtDistributingAndIsNamed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.unreachable["workload-2"] = true
	w.request = Request{ID: "r1"}
	s := State{}
	for range 10 {
		p := Next(s, w.observed())
		w.apply(p)
		s = p.State
		w.now = w.now.Add(time.Hour)
	}
	if s.Phase != Distributing {
		t.Fatalf("phase = %s, want Distributing while workload-2 is unreachable", s.Phase)
	}
	if !slices.Equal(s.WaitingFor, []string{"workload-2"}) || !strings.Contains(s.Message, "workload-2") {
		t.Errorf("waiting for %v (%q), want workload-2 named", s.WaitingFor, s.Message)
	}
	if w.signer != 0 {
		t.Error("signing switched while a cluster did not trust the new root")
	}
	delete(w.unreachable, "workload-2")
	s, _ = w.run(s, 50)
	if s.Phase != Idle || s.Active != 1 {
		t.Errorf("after workload-2 returned: phase %s, active %d; want Idle in slot 1", s.Phase, s.Active)
	}
}

func TestForceAndTimeoutProceedWithoutUnreachableClusters(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		req     Request
		timeout time.Duration
	}{
		"--force skips the unreachable cluster":     {req: Request{ID: "r1", Force: true}},
		"the distribution timeout ends the waiting": {req: Request{ID: "r1"}, timeout: 30 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.unreachable["workload-2"] = true
			w.request = tc.req
			s := State{}
			var events []string
			for range 20 {
				o := w.observed()
				o.DistributionTimeout = tc.timeout
				p := Next(s, o)
				for _, e := range p.Events {
					events = append(events, e.Reason+": "+e.Message)
				}
				w.apply(p)
				s = p.State
				w.now = w.now.Add(20 * time.Minute)
			}
			if s.Phase != Idle || s.Active != 1 {
				t.Errorf("phase %s, active %d; want the rotation done", s.Phase, s.Active)
			}
			if !slices.ContainsFunc(events, func(e string) bool {
				return strings.HasPrefix(e, "RotationProceeding") && strings.Contains(e, "workload-2")
			}) {
				t.Errorf("no event names the skipped cluster: %q", events)
			}
		})
	}
}

func TestAKeyReplacedOutsideARotationIsStagedAsADetectedRotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// Someone re-issued the active root with a new key: its CA Issuer
	// signs with it from now on, but nothing was re-issued yet.
	w.slots[0] = testpki.MustIssue(t, "root-0-rekeyed", true, nil, yearLong)
	p := Next(State{}, w.observed())
	if p.State.Phase != Distributing || !p.State.Detected {
		t.Fatalf("phase %s detected %t, want a detected rotation at Distributing", p.State.Phase, p.State.Detected)
	}
	roots, _ := certinfo.ParsePEM(p.Bundle)
	if len(roots) != 2 {
		t.Errorf("bundle has %d roots, want old and new", len(roots))
	}
	w.apply(p)
	s, phases := w.run(p.State, 50)
	if s.Phase != Idle || s.Active != 0 {
		t.Errorf("ended in %s with slot %d; want Idle in slot 0", s.Phase, s.Active)
	}
	if !slices.Contains(phases, Switching) {
		t.Errorf("phases %v skip Switching", phases)
	}
}

func TestAbortBeforeTheSwitchRestoresTheOldBundleAndAfterItIsRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	old := w.published
	w.unreachable["workload-2"] = true
	w.request = Request{ID: "r1"}
	s := State{}
	for range 3 {
		p := Next(s, w.observed())
		w.apply(p)
		s = p.State
	}
	if s.Phase != Distributing {
		t.Fatalf("phase %s, want Distributing", s.Phase)
	}
	delete(w.unreachable, "workload-2")
	w.request.AbortID = "a1"
	s, phases := w.run(s, 10)
	if s.Phase != Idle || s.Active != 0 || string(w.published) != string(old) {
		t.Errorf("after abort: phase %s, active %d, bundle restored %t", s.Phase, s.Active, string(w.published) == string(old))
	}
	if !slices.Contains(phases, Aborting) {
		t.Errorf("phases %v lack Aborting", phases)
	}
	if _, ok := w.slots[1]; ok {
		t.Error("the aborted new root was not deleted")
	}

	// Past the switch, abort is refused and the rotation completes.
	w2 := newWorld(t)
	w2.request = Request{ID: "r1"}
	s = State{}
	for s.Phase != Grace {
		p := Next(s, w2.observed())
		w2.apply(p)
		s = p.State
	}
	w2.request.AbortID = "a1"
	p := Next(s, w2.observed())
	if p.State.Phase == Aborting || !slices.ContainsFunc(p.Events, func(e Event) bool { return e.Reason == "AbortRefused" }) {
		t.Errorf("abort during Grace: phase %s events %v, want AbortRefused", p.State.Phase, p.Events)
	}
}

func TestStateSurvivesItsConfigMapData(t *testing.T) {
	t.Parallel()
	s := State{Phase: Grace, Active: 1, OldRoots: []byte("old"), NewRoot: []byte("new"), HandledRequest: "r1",
		PhaseSince: t0, GraceUntil: t0.Add(time.Hour), WaitingFor: []string{"a", "b"}, Message: "m"}
	got, err := FromData(s.Data())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := FromData(map[string]string{KeyActiveSlot: "7"}); err == nil || !strings.Contains(err.Error(), "activeSlot") {
		t.Errorf("a bad slot: err = %v", err)
	}
	if s, err := FromData(nil); err != nil || s.Phase != Idle || s.Active != 0 {
		t.Errorf("no data: %+v, %v; want Idle in slot 0", s, err)
	}
}

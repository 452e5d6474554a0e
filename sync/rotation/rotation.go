// Package rotation stages a root key rotation across every cluster so that no
// agent ever meets a certificate it does not trust:
//
//	Minting       a new root is issued in the other root slot; the old root's
//	              CA Issuer keeps signing
//	Distributing  the bundle [old, new] is published; the stage ends when the
//	              management cluster and every registered cluster hold it
//	Switching     the server and signing certificates move to the new root's
//	              CA Issuer; the stage ends when both chain to the new root
//	Grace         both roots stay trusted while agents renew client
//	              certificates issued under the old chain
//	Retiring      the bundle [new] is published and confirmed everywhere; the
//	              old slot is deleted
//
// The state lives in the management cluster (a ConfigMap), and Next is pure:
// a controller killed at any point recomputes the same step from the same
// state and observations, so a rotation resumes where it stopped.
package rotation

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relay-pki/relay-pki/internal/certinfo"
	"github.com/relay-pki/relay-pki/issuer"
)

// Phase of a rotation.
type Phase string

const (
	Idle         Phase = "Idle"
	Minting      Phase = "Minting"
	Distributing Phase = "Distributing"
	Switching    Phase = "Switching"
	Grace        Phase = "Grace"
	Retiring     Phase = "Retiring"
	// Aborting publishes the old bundle again and removes the new root; it
	// is possible until signing has switched.
	Aborting Phase = "Aborting"
)

// Phases in the order a rotation goes through them.
var Phases = []Phase{Idle, Minting, Distributing, Switching, Grace, Retiring, Aborting}

// ConfigMap data keys. The controller owns the state keys; `relay-pki rotate`
// owns the request keys (a different field manager), so neither overwrites
// the other.
const (
	KeyPhase          = "phase"
	KeyActiveSlot     = "activeSlot"
	KeyOldRoots       = "oldRoots.pem"
	KeyNewRoot        = "newRoot.pem"
	KeyDetected       = "detected"
	KeyHandledRequest = "handledRequest"
	KeyHandledAbort   = "handledAbort"
	KeyPhaseSince     = "phaseSince"
	KeyGraceUntil     = "graceUntil"
	KeyWaitingFor     = "waitingFor"
	KeyMessage        = "message"

	KeyRequestedAt      = "requestedAt"
	KeyForce            = "force"
	KeyAbortRequestedAt = "abortRequestedAt"
)

// State is the persisted progress of a rotation. It holds certificates, never
// keys.
type State struct {
	Phase  Phase
	Active issuer.Slot
	// OldRoots are the anchors trusted before the rotation (PEM); NewRoot is
	// the root being rotated to, once minted.
	OldRoots, NewRoot []byte
	// Detected: the new root appeared in the active slot without a request
	// (its key was replaced outside relay-pki), so signing already uses it
	// and the server and signing certificates are re-issued at Switching.
	Detected       bool
	HandledRequest string
	HandledAbort   string
	PhaseSince     time.Time
	GraceUntil     time.Time
	WaitingFor     []string
	Message        string
}

// Request is what `relay-pki rotate` asked for.
type Request struct {
	// ID is the requestedAt value; a request is new while it differs from
	// the state's HandledRequest.
	ID    string
	Force bool
	// AbortID likewise, for `relay-pki rotate abort`.
	AbortID string
}

// Cluster is one registered cluster as the controller last saw it.
type Cluster struct {
	Name string
	// CAHash is the SHA-256 of the ca.crt the cluster was last confirmed to
	// hold (read back from its apiserver).
	CAHash string
	// Reachable is false for a cluster the controller cannot currently
	// reach or write (Unreachable, Forbidden, InvalidKubeconfig).
	Reachable bool
}

// Observed is what the controller sees now.
type Observed struct {
	Now     time.Time
	Request Request
	// SlotRoots holds the certificate cert-manager issued in each root slot
	// (absent when there is none yet).
	SlotRoots map[issuer.Slot]*x509.Certificate
	// Published are the anchors of the published bundle, PublishedHash the
	// SHA-256 of its ca.crt.
	Published     []*x509.Certificate
	PublishedHash string
	// ServerChain and SigningChain are tls.crt of the two secrets;
	// LeavesReady says both Certificates are Ready for their current spec.
	ServerChain, SigningChain []byte
	LeavesReady               bool
	Clusters                  []Cluster
	GracePeriod               time.Duration
	// DistributionTimeout, when positive, ends a wait for clusters that have
	// not confirmed; they are named.
	DistributionTimeout time.Duration
}

// Event is something worth telling the operator.
type Event struct {
	Warning bool
	Reason  string
	Message string
}

// Plan is what the controller must do now.
type Plan struct {
	State State
	// Roots are the root slots to keep applied and the one that signs.
	Roots issuer.Roots
	// Bundle is the PEM to publish as ca.crt; nil publishes nothing (no root
	// issued yet).
	Bundle []byte
	// Delete is a root slot whose Certificate, CA Issuer and Secret must go.
	Delete *issuer.Slot
	// Reissue asks for the server and signing certificates to be re-issued
	// (a detected rotation: their issuer did not change).
	Reissue bool
	Events  []Event
	// RequeueAfter is when to look again without any event (a grace
	// period ending, a gate still closed).
	RequeueAfter time.Duration
}

// gateRecheck is how often a closed gate is re-checked without events.
const gateRecheck = 10 * time.Second

// Next computes the plan for the current state and observations, taking as
// many steps as the observations allow at once.
func Next(s State, o Observed) Plan {
	if s.Phase == "" {
		s.Phase = Idle
	}
	var events []Event
	for range len(Phases) + 1 {
		p := step(s, o)
		events = append(events, p.Events...)
		if p.State.Phase == s.Phase {
			p.Events = events
			return p
		}
		p.State.PhaseSince = o.Now
		s = p.State
	}
	// Unreachable: each phase moves forward at most once per observation.
	p := step(s, o)
	p.Events = append(events, p.Events...)
	return p
}

func step(s State, o Observed) Plan {
	p := stepPhase(s, o)
	p.Roots = p.State.Roots()
	return p
}

// Roots are the root slots a phase keeps and the one that signs.
func (s State) Roots() issuer.Roots {
	switch s.Phase {
	case Minting, Distributing:
		return rotatingRoots(s, false)
	case Switching, Grace:
		return rotatingRoots(s, true)
	}
	return issuer.SteadyRoots(s.Active)
}

func stepPhase(s State, o Observed) Plan {
	next := s.Active.Other()
	p := Plan{State: s}
	switch s.Phase {
	case Idle:
		cur := o.SlotRoots[s.Active]
		if cur != nil {
			p.Bundle = encode(cur)
		}
		switch {
		case o.Request.ID != "" && o.Request.ID != s.HandledRequest:
			if cur == nil {
				p.Events = append(p.Events, Event{true, "RotationRefused", "cannot rotate the root: the current root has not been issued yet"})
				p.State.HandledRequest = o.Request.ID
				return p
			}
			p.State = State{Phase: Minting, Active: s.Active, OldRoots: encode(cur), HandledRequest: o.Request.ID, HandledAbort: o.Request.AbortID}
			p.Events = append(p.Events, Event{false, "RotationStarted", fmt.Sprintf("root key rotation requested: minting a new root in %s while %s keeps signing", slotName(next), slotName(s.Active))})
		case cur != nil && len(o.Published) > 0 && !hasKey(o.Published, cur):
			// The active root's key was replaced outside relay-pki: its CA
			// Issuer already signs with a key no cluster trusts yet.
			p.State = State{Phase: Distributing, Active: s.Active, OldRoots: encode(o.Published...), NewRoot: encode(cur), Detected: true,
				HandledRequest: s.HandledRequest, HandledAbort: o.Request.AbortID}
			p.Events = append(p.Events, Event{true, "RotationDetected", "the root was re-issued with a new key outside a staged rotation: publishing old and new roots together before the server and signing certificates are re-issued"})
		}
	case Minting:
		p.Bundle = s.OldRoots
		if aborted(&p, o) {
			return p
		}
		nr := o.SlotRoots[next]
		old, _ := certinfo.ParsePEM(s.OldRoots)
		if nr != nil && !hasKey(old, nr) {
			p.State.Phase = Distributing
			p.State.NewRoot = encode(nr)
			p.Events = append(p.Events, Event{false, "RootMinted", fmt.Sprintf("new root minted in %s (sha256 %s); publishing old and new roots to every cluster", slotName(next), fingerprint(nr))})
		} else {
			p.RequeueAfter = gateRecheck
		}
	case Distributing:
		p.Bundle = union(s.OldRoots, s.NewRoot)
		if aborted(&p, o) {
			return p
		}
		if gate(&p, o, "old and new roots") {
			p.State.Phase = Switching
			p.Events = append(p.Events, Event{false, "BundleDistributed", "every cluster holds old and new roots: switching the server and signing certificates to the new root"})
		}
	case Switching:
		p.Bundle = union(s.OldRoots, s.NewRoot)
		newRoot, _ := certinfo.ParsePEM(s.NewRoot)
		onNew := o.LeavesReady && chainsTo(o.ServerChain, newRoot, o.Now) && chainsTo(o.SigningChain, newRoot, o.Now)
		if abortRequested(s, o) {
			p.State.HandledAbort = o.Request.AbortID
			p.Events = append(p.Events, Event{true, "AbortRefused", "signing has switched to the new root: the rotation cannot be aborted and continues"})
		}
		if !onNew {
			p.Reissue = s.Detected
			p.RequeueAfter = gateRecheck
			p.State.Message = "waiting for the server and signing certificates to chain to the new root"
			return p
		}
		p.State.Phase = Grace
		p.State.Message = ""
		p.State.GraceUntil = o.Now.Add(o.GracePeriod)
		p.Events = append(p.Events, Event{false, "SigningSwitched", fmt.Sprintf("server and signing certificates chain to the new root; the old root stays trusted until %s", p.State.GraceUntil.UTC().Format(time.RFC3339))})
	case Grace:
		p.Bundle = union(s.OldRoots, s.NewRoot)
		if abortRequested(s, o) {
			p.State.HandledAbort = o.Request.AbortID
			p.Events = append(p.Events, Event{true, "AbortRefused", "signing has switched to the new root: the rotation cannot be aborted and continues"})
		}
		if o.Now.Before(s.GraceUntil) {
			p.RequeueAfter = s.GraceUntil.Sub(o.Now)
			return p
		}
		p.State.Phase = Retiring
		if !s.Detected {
			p.State.Active = next
		}
		p.Bundle = s.NewRoot
		p.Events = append(p.Events, Event{false, "RetiringOldRoot", "grace period over: publishing the new root alone"})
	case Retiring:
		p.Bundle = s.NewRoot
		if !s.Detected {
			old := s.Active.Other()
			p.Delete = &old
		}
		if retired(&p, o) && gate(&p, o, "the new root alone") {
			p.State = State{Phase: Idle, Active: s.Active, HandledRequest: s.HandledRequest, HandledAbort: s.HandledAbort}
			p.Events = append(p.Events, Event{false, "RotationComplete", "every cluster trusts only the new root"})
		}
	case Aborting:
		p.Bundle = s.OldRoots
		if !s.Detected {
			p.Delete = &next
		}
		if retired(&p, o) && gate(&p, o, "the old roots") {
			p.State = State{Phase: Idle, Active: s.Active, HandledRequest: s.HandledRequest, HandledAbort: s.HandledAbort}
			p.Events = append(p.Events, Event{false, "RotationAborted", "the rotation was aborted: every cluster trusts the old roots only"})
		}
	default:
		p.State = State{Phase: Idle, Active: s.Active, HandledRequest: s.HandledRequest, HandledAbort: s.HandledAbort}
		p.Events = append(p.Events, Event{true, "RotationStateInvalid", fmt.Sprintf("unknown rotation phase %q: back to Idle", s.Phase)})
	}
	return p
}

// retired reports whether the slot to delete is gone, so that a later
// rotation never mistakes a leftover root for a freshly minted one.
func retired(p *Plan, o Observed) bool {
	if p.Delete == nil {
		return true
	}
	if _, ok := o.SlotRoots[*p.Delete]; ok {
		p.RequeueAfter = gateRecheck
		return false
	}
	return true
}

func rotatingRoots(s State, switched bool) issuer.Roots {
	if s.Detected {
		return issuer.SteadyRoots(s.Active)
	}
	r := issuer.Roots{Slots: []issuer.Slot{s.Active, s.Active.Other()}, Signer: s.Active}
	if switched {
		r.Signer = s.Active.Other()
	}
	return r
}

func abortRequested(s State, o Observed) bool {
	return o.Request.AbortID != "" && o.Request.AbortID != s.HandledAbort
}

// aborted turns an abort request into the Aborting phase (before signing has
// switched only).
func aborted(p *Plan, o Observed) bool {
	if !abortRequested(p.State, o) {
		return false
	}
	p.State.HandledAbort = o.Request.AbortID
	if p.State.Detected {
		p.Events = append(p.Events, Event{true, "AbortRefused", "the new root was not minted by relay-pki and already signs: the rotation cannot be aborted and continues"})
		return false
	}
	p.State.Phase = Aborting
	p.Events = append(p.Events, Event{true, "RotationAborting", "abort requested: publishing the old roots again and removing the new root"})
	return true
}

// gate reports whether the published bundle and every cluster hold
// p.Bundle. Clusters that have not confirmed are named in the state; with
// Force unreachable ones are skipped, and past the distribution timeout all
// are.
func gate(p *Plan, o Observed, what string) bool {
	want := Hash(p.Bundle)
	var waiting, skipped []string
	if o.PublishedHash != want {
		waiting = append(waiting, "management")
	}
	timedOut := o.DistributionTimeout > 0 && !p.State.PhaseSince.IsZero() && o.Now.Sub(p.State.PhaseSince) >= o.DistributionTimeout
	for _, c := range o.Clusters {
		if c.CAHash == want {
			continue
		}
		if (o.Request.Force && !c.Reachable) || timedOut {
			skipped = append(skipped, c.Name)
			continue
		}
		waiting = append(waiting, c.Name)
	}
	sort.Strings(waiting)
	sort.Strings(skipped)
	if len(waiting) > 0 {
		msg := fmt.Sprintf("waiting for %s to hold %s", strings.Join(waiting, ", "), what)
		if !slices.Equal(waiting, p.State.WaitingFor) {
			p.Events = append(p.Events, Event{true, "RotationWaiting", msg})
		}
		p.State.WaitingFor = waiting
		p.State.Message = msg
		p.RequeueAfter = gateRecheck
		return false
	}
	if len(skipped) > 0 {
		why := "forced"
		if timedOut {
			why = fmt.Sprintf("distribution timeout %s passed", o.DistributionTimeout)
		}
		p.Events = append(p.Events, Event{true, "RotationProceeding", fmt.Sprintf("%s: proceeding without %s, which do not hold %s yet", why, strings.Join(skipped, ", "), what)})
	}
	p.State.WaitingFor = nil
	p.State.Message = ""
	return true
}

// Hash is the SHA-256 (hex) of a ca.crt, as clusters report it.
func Hash(pemBytes []byte) string {
	if len(pemBytes) == 0 {
		return ""
	}
	sum := sha256.Sum256(pemBytes)
	return hex.EncodeToString(sum[:])
}

// encode is the normalised PEM of certs, as trust.Verify publishes it.
func encode(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// union is a followed by the certificates of b that a lacks.
func union(a, b []byte) []byte {
	ac, _ := certinfo.ParsePEM(a)
	bc, _ := certinfo.ParsePEM(b)
	out := slices.Clone(ac)
	for _, c := range bc {
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return encode(out...)
}

func hasKey(certs []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(certs, func(a *x509.Certificate) bool {
		return bytes.Equal(a.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo)
	})
}

func chainsTo(chain []byte, roots []*x509.Certificate, now time.Time) bool {
	if len(chain) == 0 || len(roots) == 0 {
		return false
	}
	_, err := certinfo.VerifyChain(chain, roots, now)
	return err == nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:8])
}

func slotName(s issuer.Slot) string { return "root slot " + strconv.Itoa(int(s)) }

// Data is the state as ConfigMap data (controller-owned keys only).
func (s State) Data() map[string]string {
	d := map[string]string{KeyPhase: string(s.Phase), KeyActiveSlot: strconv.Itoa(int(s.Active))}
	set := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	set(KeyOldRoots, string(s.OldRoots))
	set(KeyNewRoot, string(s.NewRoot))
	if s.Detected {
		d[KeyDetected] = "true"
	}
	set(KeyHandledRequest, s.HandledRequest)
	set(KeyHandledAbort, s.HandledAbort)
	if !s.PhaseSince.IsZero() {
		d[KeyPhaseSince] = s.PhaseSince.UTC().Format(time.RFC3339Nano)
	}
	if !s.GraceUntil.IsZero() {
		d[KeyGraceUntil] = s.GraceUntil.UTC().Format(time.RFC3339Nano)
	}
	set(KeyWaitingFor, strings.Join(s.WaitingFor, ","))
	set(KeyMessage, s.Message)
	return d
}

// FromData reads a state; missing data is Idle in slot 0.
func FromData(d map[string]string) (State, error) {
	s := State{Phase: Phase(d[KeyPhase])}
	if s.Phase == "" {
		s.Phase = Idle
	}
	if v := d[KeyActiveSlot]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || (n != 0 && n != 1) {
			return State{}, fmt.Errorf("rotation state %s=%q: must be 0 or 1", KeyActiveSlot, v)
		}
		s.Active = issuer.Slot(n)
	}
	s.OldRoots, s.NewRoot = []byte(d[KeyOldRoots]), []byte(d[KeyNewRoot])
	if len(s.OldRoots) == 0 {
		s.OldRoots = nil
	}
	if len(s.NewRoot) == 0 {
		s.NewRoot = nil
	}
	s.Detected = d[KeyDetected] == "true"
	s.HandledRequest, s.HandledAbort = d[KeyHandledRequest], d[KeyHandledAbort]
	for key, t := range map[string]*time.Time{KeyPhaseSince: &s.PhaseSince, KeyGraceUntil: &s.GraceUntil} {
		if v := d[key]; v != "" {
			parsed, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return State{}, fmt.Errorf("rotation state %s=%q: %w", key, v, err)
			}
			*t = parsed
		}
	}
	if v := d[KeyWaitingFor]; v != "" {
		s.WaitingFor = strings.Split(v, ",")
	}
	s.Message = d[KeyMessage]
	return s, nil
}

// RequestFrom reads the request keys.
func RequestFrom(d map[string]string) Request {
	return Request{ID: d[KeyRequestedAt], Force: d[KeyForce] == "true", AbortID: d[KeyAbortRequestedAt]}
}

package main

import (
	"testing"
	"time"
)

func TestArrivalsCountOnlyWhatCameAfterTheChange(t *testing.T) {
	t0 := time.Now()
	var o observer
	o.record("s", "a", []byte("v1"), t0)
	o.record("s", "a", []byte("v2"), t0.Add(time.Second))
	o.record("s", "a", []byte("v1"), t0.Add(3*time.Second)) // back to an old value
	o.record("s", "b", []byte("v1"), t0)

	got, missing := o.arrivals("s", []string{"a", "b"}, []byte("v1"), t0.Add(2*time.Second))
	if at := got["a"]; !at.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("a: arrival %s after t0, want 3s (the return to v1, not its first sighting)", at.Sub(t0))
	}
	if len(missing) != 1 || missing[0] != "b" {
		t.Errorf("missing = %v, want [b]: b held v1 before the change and was not written since", missing)
	}
}

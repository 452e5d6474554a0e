package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no latencies give zero", nil, 50, 0},
		{"one latency is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100 ms is the 50th", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100 ms is the 99th, not the maximum", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the maximum", ms(hundred...), 100, 100 * time.Millisecond},
		{"p99 of 10 latencies is the last (nearest rank)", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(p%v) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
}

func TestSlope(t *testing.T) {
	for _, tc := range []struct {
		name string
		x, y []float64
		want float64
	}{
		{"points on a line give its slope", []float64{0, 100, 1000}, []float64{40, 65, 290}, 0.25},
		{"a single point has no slope", []float64{100}, []float64{65}, 0},
		{"equal x have no slope", []float64{5, 5}, []float64{1, 2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := slope(tc.x, tc.y); round(got, 6) != tc.want {
				t.Errorf("slope = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWritesCountLeasesApart(t *testing.T) {
	before := requestCounts{{"APPLY", "secrets"}: 10, {"PUT", "leases"}: 4, {"GET", "secrets"}: 100, {"WATCH", "secrets"}: 2}
	after := requestCounts{{"APPLY", "secrets"}: 13, {"PUT", "leases"}: 9, {"GET", "secrets"}: 500, {"WATCH", "secrets"}: 4, {"POST", "events"}: 1}
	w, l, byVerb := after.writes(before)
	if w != 4 || l != 5 {
		t.Errorf("writes, lease writes = %v, %v; want 4, 5 (reads and watches are not writes)", w, l)
	}
	if byVerb["APPLY secrets"] != 3 || byVerb["POST events"] != 1 || len(byVerb) != 2 {
		t.Errorf("by verb = %v", byVerb)
	}
}

func TestMarkdownSaysWhatWasNotRun(t *testing.T) {
	loop, ratio := 13.9, 116.0
	extra := 139.0
	r := &results{
		Machine: "2 cores",
		Fanout: []fanout{
			{N: 100, Change: "token", RelayPKIS: 0.12, FloorS: 0.15, KubectlLoopS: &loop, KubectlOverRelay: &ratio, RelayOverFloor: 0.8},
			{N: 1000, Change: "token", RelayPKIS: 1.4, FloorS: 1.0, KubectlLoopExtrapolatedS: &extra, RelayOverFloor: 1.4},
		},
		Memory: memory{RSSMiB: map[string]float64{"0": 33, "1000": 258}},
	}
	var out bytes.Buffer
	markdown(&out, r)
	for _, want := range []string{"| 100 | token | 0.120 s", "13.90 s", "116×", "~139 s (extrapolated)", "N=0 33.0 MiB, N=1000 258.0 MiB"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, out.String())
		}
	}
}

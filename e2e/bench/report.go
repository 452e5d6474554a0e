package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// results is bench-results.json. Times are seconds, memory MiB.
type results struct {
	Machine  string     `json:"machine"`
	Fanout   []fanout   `json:"fanout"`
	Steady   *steady    `json:"steady,omitempty"`
	Memory   memory     `json:"memory"`
	Cold     *coldStart `json:"cold_start,omitempty"`
	Profiles []string   `json:"profiles,omitempty"`
	Notes    []string   `json:"notes,omitempty"`
}

type fanout struct {
	N      int    `json:"n"`
	Change string `json:"change"`
	// RelayPKIS, FloorS and KubectlLoopS are times until the last cluster
	// holds the change.
	RelayPKIS    float64  `json:"relay_pki_s"`
	FloorS       float64  `json:"floor_s"`
	KubectlLoopS *float64 `json:"kubectl_loop_s"`
	// FloorWorkers is the worker count whose median floor run was fastest.
	FloorWorkers int `json:"floor_workers"`
	// Runs is how many times relay-pki and the floor were timed; the
	// median run is reported, RelayRunsS lists them all.
	Runs       int       `json:"runs"`
	RelayRunsS []float64 `json:"relay_pki_runs_s"`
	// KubectlLoopExtrapolatedS is the loop's per-cluster time at the largest
	// N it ran for, times N, where it was not run.
	KubectlLoopExtrapolatedS *float64 `json:"kubectl_loop_extrapolated_s,omitempty"`
	// FirstS is when the first cluster held the change: the pipeline's
	// latency before any fan-out.
	FirstS float64 `json:"first_s"`
	P50S   float64 `json:"p50_s"`
	P99S   float64 `json:"p99_s"`
	MaxS   float64 `json:"max_s"`
	// PublishS is, for the trust change, how long the management cluster
	// took to publish the verified bundle; fan-out times include it.
	PublishS *float64 `json:"publish_s,omitempty"`
	// RelayOverFloor and KubectlOverRelay are the ratios the targets name.
	RelayOverFloor   float64  `json:"relay_pki_over_floor"`
	KubectlOverRelay *float64 `json:"kubectl_loop_over_relay_pki,omitempty"`
}

type steady struct {
	N               int                `json:"n"`
	Seconds         float64            `json:"seconds"`
	Writes          float64            `json:"writes"`
	WritesByVerb    map[string]float64 `json:"writes_by_verb,omitempty"`
	LeaseWrites     float64            `json:"lease_writes"`
	CPUSeconds      float64            `json:"cpu_seconds"`
	CPUCoreFraction float64            `json:"cpu_core_fraction"`
	Goroutines      float64            `json:"goroutines"`
}

type memory struct {
	RSSMiB        map[string]float64 `json:"rss_mib"`
	PerClusterMiB float64            `json:"per_cluster_mib"`
	// BudgetMiB is the target at the largest N: 40 MiB + 0.25 MiB per cluster.
	BudgetMiB float64 `json:"budget_mib"`
}

type coldStart struct {
	N            int                `json:"n"`
	Seconds      float64            `json:"seconds"`
	Writes       float64            `json:"writes"`
	WritesByVerb map[string]float64 `json:"writes_by_verb,omitempty"`
	LeaseWrites  float64            `json:"lease_writes"`
	// Events are the Events sent during the cold start (each one a write).
	Events []string `json:"events,omitempty"`
}

// percentile is the nearest-rank percentile of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var num, den float64
	for i := range x {
		num += (x[i] - mx) * (y[i] - my)
		den += (x[i] - mx) * (x[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func writeJSON(path string, r *results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// markdown writes the tables the README's Performance section shows.
func markdown(w io.Writer, r *results) {
	fmt.Fprintf(w, "Fan-out: time until the last of N clusters holds the change (%s)\n\n", r.Machine)
	fmt.Fprintln(w, "| N | change | relay-pki | p50 | p99 | floor (client-go SSA) | kubectl loop | relay-pki / floor | kubectl loop / relay-pki |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, f := range r.Fanout {
		loop, ratio := "not run", "-"
		switch {
		case f.KubectlLoopS != nil:
			loop = fmt.Sprintf("%.2f s", *f.KubectlLoopS)
			ratio = fmt.Sprintf("%.0f×", *f.KubectlOverRelay)
		case f.KubectlLoopExtrapolatedS != nil:
			loop = fmt.Sprintf("~%.0f s (extrapolated)", *f.KubectlLoopExtrapolatedS)
			ratio = fmt.Sprintf("~%.0f×", *f.KubectlLoopExtrapolatedS/f.RelayPKIS)
		}
		fmt.Fprintf(w, "| %d | %s | %.3f s | %.3f s | %.3f s | %.3f s | %s | %.2f | %s |\n",
			f.N, f.Change, f.RelayPKIS, f.P50S, f.P99S, f.FloorS, loop, f.RelayOverFloor, ratio)
	}
	if s := r.Steady; s != nil {
		fmt.Fprintf(w, "\nSteady state, N = %d, %.0f s with nothing changing: %.0f writes (Lease heartbeats and leader renewals, counted apart: %.0f), controller CPU %.2f s = %.2f%% of one core, %.0f goroutines\n",
			s.N, s.Seconds, s.Writes, s.LeaseWrites, s.CPUSeconds, 100*s.CPUCoreFraction, s.Goroutines)
	}
	keys := make([]string, 0, len(r.Memory.RSSMiB))
	for k := range r.Memory.RSSMiB {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return atoi(a) - atoi(b) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("N=%s %.1f MiB", k, r.Memory.RSSMiB[k]))
	}
	fmt.Fprintf(w, "\nController RSS after convergence: %s; slope %.3f MiB per cluster (budget at the largest N: %.0f MiB)\n",
		strings.Join(parts, ", "), r.Memory.PerClusterMiB, r.Memory.BudgetMiB)
	if c := r.Cold; c != nil {
		fmt.Fprintf(w, "\nCold start over N = %d clusters already in sync: all verified after %.2f s, %.0f writes %s (Lease writes apart: %.0f)\n", c.N, c.Seconds, c.Writes, describe(c.WritesByVerb, c.Events), c.LeaseWrites)
	}
}

// describe names what the writes were, such as the Event a new leader
// sends.
func describe(byVerb map[string]float64, events []string) string {
	if len(byVerb) == 0 {
		return ""
	}
	keys := make([]string, 0, len(byVerb))
	for k := range byVerb {
		keys = append(keys, fmt.Sprintf("%s ×%.0f", k, byVerb[k]))
	}
	slices.Sort(keys)
	out := "(" + strings.Join(keys, ", ")
	if len(events) > 0 {
		out += "; Events: " + strings.Join(events, "; ")
	}
	return out + ")"
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}

// plotFanout draws fan-out time against N, log-log, one colour per way,
// solid for the token and dashed for the trust bundle.
func plotFanout(path string, r *results) error {
	p := plot.New()
	p.Title.Text = "Fan-out: time until the last cluster holds the change"
	p.X.Label.Text = "registered clusters (N)"
	p.Y.Label.Text = "seconds"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(5), vg.Points(5)
	ways := []struct {
		name  string
		color color.RGBA
		value func(f fanout) (float64, bool)
	}{
		{"relay-pki", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, func(f fanout) (float64, bool) { return f.RelayPKIS, true }},
		{"floor (client-go SSA)", color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 255}, func(f fanout) (float64, bool) { return f.FloorS, true }},
		{"kubectl loop", color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}, func(f fanout) (float64, bool) {
			if f.KubectlLoopS == nil {
				return 0, false
			}
			return *f.KubectlLoopS, true
		}},
	}
	for _, way := range ways {
		for _, change := range []string{"token", "trust"} {
			var pts plotter.XYs
			for _, f := range r.Fanout {
				if v, ok := way.value(f); ok && f.Change == change {
					pts = append(pts, plotter.XY{X: float64(f.N), Y: math.Max(v, 1e-3)})
				}
			}
			if len(pts) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			line.Color, points.Color = way.color, way.color
			line.Width = vg.Points(1.5)
			if change == "trust" {
				line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
				points.Shape = draw.TriangleGlyph{}
			}
			p.Add(line, points)
			p.Legend.Add(way.name+" "+change, line, points)
		}
	}
	// The loop where it was not run: its measured per-cluster time, dotted.
	red := color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}
	for _, change := range []string{"token", "trust"} {
		var pts plotter.XYs
		for _, f := range r.Fanout {
			if f.Change != change {
				continue
			}
			switch {
			case f.KubectlLoopS != nil:
				pts = plotter.XYs{{X: float64(f.N), Y: *f.KubectlLoopS}}
			case f.KubectlLoopExtrapolatedS != nil && len(pts) > 0:
				pts = append(pts, plotter.XY{X: float64(f.N), Y: *f.KubectlLoopExtrapolatedS})
			}
		}
		if len(pts) < 2 {
			continue
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color, line.Width = red, vg.Points(1)
		line.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
		p.Add(line)
		if change == "token" {
			p.Legend.Add("kubectl loop, extrapolated", line)
		}
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
)

// writeVerbs are the apiserver_request_total verbs that change state.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// requestCounts is one scrape of an apiserver's apiserver_request_total,
// summed by verb and resource.
type requestCounts map[[2]string]float64

// writes is what changed between two scrapes: writes to anything but
// Leases, and Lease writes on their own. kube-apiserver heartbeats its own
// identity Lease every 10 s, and the controller renews its leader Lease;
// apiserver_request_total cannot tell those writers apart, so Leases are
// reported separately rather than hidden.
func (after requestCounts) writes(before requestCounts) (writes, leaseWrites float64, byVerb map[string]float64) {
	byVerb = map[string]float64{}
	for k, v := range after {
		d := v - before[k]
		if d <= 0 || !writeVerbs[k[0]] {
			continue
		}
		if k[1] == "leases" {
			leaseWrites += d
			continue
		}
		writes += d
		byVerb[k[0]+" "+k[1]] += d
	}
	return writes, leaseWrites, byVerb
}

func scrapeAPIServer(ctx context.Context, cs kubernetes.Interface) (requestCounts, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape apiserver /metrics: %w", err)
	}
	fams, err := parseMetrics(strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	out := requestCounts{}
	if f, ok := fams["apiserver_request_total"]; ok {
		for _, m := range f.GetMetric() {
			out[[2]string{label(m, "verb"), label(m, "resource")}] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// controllerMetrics reads the controller's own /metrics.
type controllerMetrics struct {
	synced     float64
	goroutines float64
}

func scrapeController(ctx context.Context, addr string) (controllerMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return controllerMetrics{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return controllerMetrics{}, fmt.Errorf("scrape controller /metrics: %w", err)
	}
	defer resp.Body.Close()
	fams, err := parseMetrics(resp.Body)
	if err != nil {
		return controllerMetrics{}, err
	}
	var out controllerMetrics
	if f, ok := fams["relay_pki_clusters"]; ok {
		for _, m := range f.GetMetric() {
			if label(m, "state") == "Synced" {
				out.synced = m.GetGauge().GetValue()
			}
		}
	}
	if f, ok := fams["go_goroutines"]; ok && len(f.GetMetric()) > 0 {
		out.goroutines = f.GetMetric()[0].GetGauge().GetValue()
	}
	return out, nil
}

// rssMiB is the process's resident set size.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds is the user and system CPU time the process has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat times", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// fetchProfile saves a pprof profile from the controller's pprof endpoint.
func fetchProfile(ctx context.Context, addr, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package sync

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relay-pki/relay-pki/sync/rotation"
)

// Metrics are relay-pki's Prometheus series. Per-cluster series are deleted
// when the cluster is deregistered, so a removed cluster does not linger as
// "not synced" forever. Label values are names, never secret data.
type Metrics struct {
	clusterSynced   *prometheus.GaugeVec
	syncErrors      *prometheus.CounterVec
	syncDuration    prometheus.Histogram
	notAfter        *prometheus.GaugeVec
	bundleValid     prometheus.Gauge
	clustersByState *prometheus.GaugeVec
	rotationPhase   *prometheus.GaugeVec
	rotationWaiting prometheus.Gauge
	renewalOverdue  *prometheus.GaugeVec
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		clusterSynced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_pki_cluster_synced",
			Help: "1 when the cluster holds the current trust bundle and identity token, else 0.",
		}, []string{"cluster"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_pki_sync_errors_total",
			Help: "Failed syncs of a cluster, by reason (Unreachable, Conflict, InvalidKubeconfig, Forbidden, Error).",
		}, []string{"cluster", "reason"}),
		// One histogram for all clusters: per-cluster buckets would cost
		// hundreds of series per cluster for little insight.
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_pki_sync_duration_seconds",
			Help:    "Time to bring one cluster in line, including writes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_pki_certificate_not_after_timestamp_seconds",
			Help: "Expiry of the relay certificates, as a Unix time.",
		}, []string{"role"}),
		bundleValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_pki_trust_bundle_valid",
			Help: "1 when the trust source verified and was published, 0 when the last good bundle is being kept.",
		}),
		clustersByState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_pki_clusters",
			Help: "Registered clusters by sync state.",
		}, []string{"state"}),
		rotationPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_pki_rotation_phase",
			Help: "1 for the current phase of the root rotation (Idle outside one), 0 for the others.",
		}, []string{"phase"}),
		rotationWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_pki_rotation_waiting_clusters",
			Help: "Clusters a root rotation is waiting for to confirm the bundle of its stage.",
		}),
		renewalOverdue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_pki_certificate_renewal_overdue",
			Help: "1 when a relay certificate is more than 30s past its renewal time without being renewed.",
		}, []string{"certificate", "role"}),
	}
	for _, c := range []prometheus.Collector{m.clusterSynced, m.syncErrors, m.syncDuration, m.notAfter, m.bundleValid, m.clustersByState, m.rotationPhase, m.rotationWaiting, m.renewalOverdue} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) forgetCluster(cluster string) {
	m.clusterSynced.DeleteLabelValues(cluster)
	m.syncErrors.DeletePartialMatch(prometheus.Labels{"cluster": cluster})
}

func (m *Metrics) observeRotation(phase rotation.Phase, waiting int) {
	for _, p := range rotation.Phases {
		v := 0.0
		if p == phase {
			v = 1
		}
		m.rotationPhase.WithLabelValues(string(p)).Set(v)
	}
	m.rotationWaiting.Set(float64(waiting))
}

package options

import (
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Controller holds the flags of `relay-pki controller`.
type Controller struct {
	RegistrationNamespace   string
	ManageIssuers           bool
	LeaderElect             bool
	LeaderElectionNamespace string
	MetricsAddress          string
	HealthAddress           string
	PprofAddress            string
	MaxConcurrentSyncs      int
	ConnectTimeout          time.Duration
	LogFormat               string
	LogLevel                int
	KubeAPIQPS              float32
	KubeAPIBurst            int
}

// AddFlags registers the controller's flags.
func (o *Controller) AddFlags(fs *pflag.FlagSet) {
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = "relay-pki-system"
	}
	fs.StringVar(&o.RegistrationNamespace, "registration-namespace", defaultNS, "namespace of the cluster registration Secrets (label relay-pki.io/cluster=<name>, key kubeconfig); default $POD_NAMESPACE")
	fs.BoolVar(&o.ManageIssuers, "manage-issuers", true, "continuously apply the cert-manager Issuers and Certificates; false leaves them to GitOps")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "run only while holding the leader lease, so replicas can stand by")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader lease (default: the registration namespace)")
	fs.StringVar(&o.MetricsAddress, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.HealthAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz; 0 disables them")
	fs.StringVar(&o.PprofAddress, "pprof-bind-address", "0", "address of Go's /debug/pprof endpoints, for profiling; 0 (the default) disables them")
	// 10 left a 100-cluster fan-out 2-4x slower than the floor in the
	// benchmark (docs/performance.md); a worker is a goroutine, and over
	// real links each one mostly waits for a remote round trip.
	fs.IntVar(&o.MaxConcurrentSyncs, "max-concurrent-syncs", 50, "clusters synced at once: the remote writes one change keeps in flight")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", 10*time.Second, "time allowed to connect to one workload cluster")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", 50, "requests per second to the management apiserver (client-go's default of 5 would queue status writes behind each other with many clusters)")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", 100, "burst of requests to the management apiserver")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fs.IntVarP(&o.LogLevel, "verbosity", "v", 0, "log verbosity (2 logs every in-sync check)")
}

// Validate checks the flags, naming the one at fault.
func (o *Controller) Validate() error {
	if msgs := validation.IsDNS1123Label(o.RegistrationNamespace); len(msgs) > 0 {
		return fmt.Errorf("--registration-namespace %q: %s", o.RegistrationNamespace, msgs[0])
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: must be text or json", o.LogFormat)
	}
	if o.MaxConcurrentSyncs < 1 {
		return fmt.Errorf("--max-concurrent-syncs %d: must be at least 1", o.MaxConcurrentSyncs)
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		return fmt.Errorf("--kube-api-qps %v and --kube-api-burst %d: must be positive", o.KubeAPIQPS, o.KubeAPIBurst)
	}
	if o.ConnectTimeout < time.Second {
		return fmt.Errorf("--connect-timeout %s: must be at least 1s", o.ConnectTimeout)
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = o.RegistrationNamespace
	}
	return nil
}

// Logger builds the structured logger the flags ask for.
func (o *Controller) Logger() logr.Logger {
	return zap.New(
		zap.UseDevMode(false),
		zap.Level(zapcore.Level(-o.LogLevel)),
		func(z *zap.Options) {
			if o.LogFormat == "text" {
				z.Encoder = zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
					TimeKey: "ts", LevelKey: "level", NameKey: "logger", MessageKey: "msg",
					EncodeTime: zapcore.ISO8601TimeEncoder, EncodeLevel: zapcore.CapitalLevelEncoder,
					EncodeName: zapcore.FullNameEncoder, EncodeDuration: zapcore.StringDurationEncoder,
				})
			}
		},
	)
}

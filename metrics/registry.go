package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every sbcwatch metric.
const Namespace = "sbcwatch"

// HTTPBuckets are the request duration histogram's upper bounds in
// seconds: API reads take milliseconds, evidence bundles and audit runs
// up to tens of seconds.
var HTTPBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Registry is the set of metrics one sbcwatch process exposes. Its zero
// value is not usable; call New. All methods are safe for concurrent use.
type Registry struct {
	reg     *prometheus.Registry
	httpDur *prometheus.HistogramVec
	sources *sourceSet
}

// New returns a registry with the Go and process collectors, the build
// info, the HTTP histograms and the (so far empty) set of sources.
// version, revision and buildDate label sbcwatch_build_info.
func New(version, revision, buildDate string) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), sources: newSourceSet()}
	r.httpDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to serve HTTP requests, by chi route pattern (\"unmatched\" for unknown paths), method and status code.",
		Buckets: HTTPBuckets,
	}, []string{"route", "method", "code"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "revision", "build_date", "goversion"})
	build.WithLabelValues(version, revision, buildDate, runtime.Version()).Set(1)
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.httpDur, build, r.sources,
	)
	return r
}

// Register adds a collector (for example a StoreCollector). Registering
// an equal collector twice is not an error.
func (r *Registry) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil
		}
		return fmt.Errorf("metrics: register: %w", err)
	}
	return nil
}

// Gatherer returns what Handler serves, for tests and embedding.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails is logged and its metrics are left out; the rest
// is still served. At most four scrapes run at once.
func (r *Registry) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{log.With("component", "metrics")},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// ObserveHTTP records one served request. route must be a route pattern
// (never a raw path, so a scan does not make one series per path) and
// method one of the standard methods; anything else is counted as
// "other".
func (r *Registry) ObserveHTTP(route, method string, code int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	r.httpDur.WithLabelValues(route, method, strconv.Itoa(code)).Observe(d.Seconds())
}

// slogPrinter adapts slog to promhttp's Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics: scrape", "err", fmt.Sprint(v...)) }

// Package metrics is the server's Prometheus metrics, in one registry per
// server: what the runtime ran, what the gateways decided and what
// discovery found, for operators to alert on.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the server's collectors. A nil *Metrics records nothing, so
// a runtime built without one (commands, tests) pays nothing.
type Metrics struct {
	registry          *prometheus.Registry
	calls             *prometheus.CounterVec
	callDuration      *prometheus.HistogramVec
	sandboxStart      *prometheus.HistogramVec
	requests          *prometheus.CounterVec
	inFlight          prometheus.Gauge
	waiting           prometheus.Gauge
	discoveryDuration prometheus.Histogram
	plugins           *prometheus.GaugeVec
	installs          *prometheus.CounterVec
}

const namespace = "kubernetes_mcp_server"

// New makes the collectors, with Go's and the process's own.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "calls_total",
			Help: "Plugin calls by plugin, cluster, sandbox backend and outcome (ok, failed, timeout, cancelled, killed, refused, error)."},
			[]string{"plugin", "cluster", "backend", "outcome"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "call_duration_seconds",
			Help: "Time from a call's start (after any wait for a slot) to its result, by backend and outcome.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)},
			[]string{"backend", "outcome"}),
		sandboxStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "sandbox_start_seconds",
			Help:    "Time a call spent in its sandbox besides the plugin's own run: making (cold) or starting (warm) the sandbox and collecting the exit, by backend and warm.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 13)},
			[]string{"backend", "warm"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "gateway_requests_total",
			Help: "Kubernetes API requests plugins made through their call's gateway, by verb, resource and decision (allow, deny)."},
			[]string{"verb", "resource", "decision"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "calls_in_flight",
			Help: "Calls running now, each in its sandbox."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "calls_waiting",
			Help: "Calls waiting for one of max_concurrent slots."}),
		discoveryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "discovery_duration_seconds",
			Help: "Time one plugin discovery took.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		plugins: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "plugins",
			Help: "Plugins the last discovery found, by whether policy allows them (allowed = true or false)."},
			[]string{"allowed"}),
		installs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "installs_total",
			Help: "Plugin installs by outcome (installed, updated, already_installed, up_to_date, failed)."},
			[]string{"outcome"}),
	}
	m.registry.MustRegister(m.calls, m.callDuration, m.sandboxStart, m.requests, m.inFlight, m.waiting,
		m.discoveryDuration, m.plugins, m.installs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// CallDone counts a finished or refused call. plugin is "" for a name no
// plugin has, so that agents' typos do not grow the label set.
func (m *Metrics) CallDone(plugin, cluster, backend, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(plugin, cluster, backend, outcome).Inc()
	if d > 0 {
		m.callDuration.WithLabelValues(backend, outcome).Observe(d.Seconds())
	}
}

// SandboxStart observes a call's time in its sandbox besides the plugin's
// run.
func (m *Metrics) SandboxStart(backend string, warm bool, d time.Duration) {
	if m == nil || d < 0 {
		return
	}
	w := "false"
	if warm {
		w = "true"
	}
	m.sandboxStart.WithLabelValues(backend, w).Observe(d.Seconds())
}

// Request counts one gateway decision.
func (m *Metrics) Request(verb, resource, decision string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(verb, resource, decision).Inc()
}

// Running moves the count of calls in flight by delta.
func (m *Metrics) Running(delta int) {
	if m != nil {
		m.inFlight.Add(float64(delta))
	}
}

// Waiting moves the count of calls waiting for a slot by delta.
func (m *Metrics) Waiting(delta int) {
	if m != nil {
		m.waiting.Add(float64(delta))
	}
}

// Discovered records one discovery: how long it took and what it found.
func (m *Metrics) Discovered(d time.Duration, allowed, notAllowed int) {
	if m == nil {
		return
	}
	m.discoveryDuration.Observe(d.Seconds())
	m.plugins.WithLabelValues("true").Set(float64(allowed))
	m.plugins.WithLabelValues("false").Set(float64(notAllowed))
}

// Installed counts one install by its outcome.
func (m *Metrics) Installed(outcome string) {
	if m != nil {
		m.installs.WithLabelValues(outcome).Inc()
	}
}

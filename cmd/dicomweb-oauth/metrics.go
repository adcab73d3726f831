package main

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dicomweb-oauth/dicomweb-oauth/extproc"
	"github.com/dicomweb-oauth/dicomweb-oauth/tokens"
)

// metrics are the service's Prometheus metrics, on a registry it owns.
type metrics struct {
	registry            *prometheus.Registry
	acquisitions        *prometheus.CounterVec
	acquisitionDuration *prometheus.HistogramVec
	decisions           *prometheus.CounterVec
	decisionDuration    *prometheus.HistogramVec
}

func newMetrics(set *tokens.Set) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dicomweb_oauth_token_acquisitions_total",
			Help: "Token requests to the identity provider, by cluster and result " +
				"(success, or the error class).",
		}, []string{"cluster", "result"}),
		acquisitionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dicomweb_oauth_token_acquisition_duration_seconds",
			Help:    "Duration of token requests to the identity provider.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"cluster"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dicomweb_oauth_decisions_total",
			Help: "Proxy requests answered, by API, cluster and outcome. " +
				"Requests for unknown clusters have an empty cluster label.",
		}, []string{"api", "cluster", "outcome"}),
		decisionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dicomweb_oauth_decision_duration_seconds",
			Help:    "Time to answer a proxy request, by API.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"api"}),
	}

	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dicomweb_oauth_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": buildVersion(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)

	m.registry.MustRegister(
		m.acquisitions, m.acquisitionDuration, m.decisions, m.decisionDuration, buildInfo,
		tokenCollector{set: set},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) observeAcquisition(cluster string, d time.Duration, err *tokens.FetchError) {
	result := "success"
	if err != nil {
		result = string(err.Class)
	}
	m.acquisitions.WithLabelValues(cluster, result).Inc()
	m.acquisitionDuration.WithLabelValues(cluster).Observe(d.Seconds())
}

func (m *metrics) observeDecision(api string, d *extproc.Decision, duration time.Duration) {
	cluster := d.Cluster
	if d.Outcome == extproc.OutcomeUnknownCluster {
		// The name comes from the request; keep label values bounded.
		cluster = ""
	}
	m.decisions.WithLabelValues(api, cluster, d.Outcome).Inc()
	m.decisionDuration.WithLabelValues(api).Observe(duration.Seconds())
}

// tokenCollector reports each cluster's token state when scraped.
type tokenCollector struct {
	set *tokens.Set
}

var (
	tokenValidDesc = prometheus.NewDesc("dicomweb_oauth_token_valid",
		"1 when the cluster holds a token that is handed out, else 0.", []string{"cluster"}, nil)
	tokenExpiryDesc = prometheus.NewDesc("dicomweb_oauth_token_expiry_timestamp_seconds",
		"Expiry of the cluster's newest token, in Unix seconds.", []string{"cluster"}, nil)
	rejectionsDesc = prometheus.NewDesc("dicomweb_oauth_upstream_rejections_total",
		"Upstream 401 answers to requests that carried a token from this service.", []string{"cluster"}, nil)
	invalidationsDesc = prometheus.NewDesc("dicomweb_oauth_token_invalidations_total",
		"Tokens taken out of use because the upstream rejected them.", []string{"cluster"}, nil)
)

func (c tokenCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tokenValidDesc
	ch <- tokenExpiryDesc
	ch <- rejectionsDesc
	ch <- invalidationsDesc
}

func (c tokenCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.set.Statuses() {
		valid := 0.0
		if s.State == tokens.StateValid {
			valid = 1
		}
		ch <- prometheus.MustNewConstMetric(tokenValidDesc, prometheus.GaugeValue, valid, s.Cluster)
		if s.ExpiresAt != nil {
			ch <- prometheus.MustNewConstMetric(tokenExpiryDesc, prometheus.GaugeValue,
				float64(s.ExpiresAt.Unix()), s.Cluster)
		}
		ch <- prometheus.MustNewConstMetric(rejectionsDesc, prometheus.CounterValue,
			float64(s.UpstreamRejections), s.Cluster)
		ch <- prometheus.MustNewConstMetric(invalidationsDesc, prometheus.CounterValue,
			float64(s.Invalidations), s.Cluster)
	}
}

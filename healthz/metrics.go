package healthz

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is a node's Prometheus registry: the state read from a Source at
// every scrape, and counters the agent feeds (leader changes, health
// answers, apply latency).
type Metrics struct {
	reg           *prometheus.Registry
	leaderChanges prometheus.Counter
	healthAnswers *prometheus.CounterVec
	applyLatency  prometheus.Histogram
}

// NewMetrics registers the node's metrics. announced, if not nil, returns
// the VIPs this node announces now.
func NewMetrics(src Source, announced func() []string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "raftvip_leader_changes_total",
		Help: "Times this node saw the Raft leader change."})
	m.healthAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "raftvip_health_answers_total",
		Help: "Health check answers, by check and HTTP status code."}, []string{"check", "code"})
	m.applyLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "raftvip_apply_latency_seconds",
		Help: "Time from proposing a write to its being applied on this (active) node.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.reg.MustRegister(m.leaderChanges, m.healthAnswers, m.applyLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{src: src, announced: announced})
	return m
}

// LeaderChanged counts a change of leader.
func (m *Metrics) LeaderChanged() { m.leaderChanges.Inc() }

// ObserveHealth counts one health answer; it fits Options.Observe.
func (m *Metrics) ObserveHealth(check string, code int) {
	m.healthAnswers.WithLabelValues(check, strconv.Itoa(code)).Inc()
}

// ObserveApply records the latency of one write.
func (m *Metrics) ObserveApply(d time.Duration) { m.applyLatency.Observe(d.Seconds()) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	descActive      = prometheus.NewDesc("raftvip_active", "1 if this node is the active node.", nil, nil)
	descRole        = prometheus.NewDesc("raftvip_role", "1 for this node's current role.", []string{"role"}, nil)
	descTerm        = prometheus.NewDesc("raftvip_term", "Current Raft term.", nil, nil)
	descCommit      = prometheus.NewDesc("raftvip_commit_index", "Raft commit index known to this node.", nil, nil)
	descApplied     = prometheus.NewDesc("raftvip_applied_index", "Index of the last entry applied to the store.", nil, nil)
	descLastContact = prometheus.NewDesc("raftvip_last_contact_seconds", "Time since this node last heard from the leader (0 on the leader, -1 never).", nil, nil)
	descLease       = prometheus.NewDesc("raftvip_lease_remaining_seconds", "What is left of the active lease (0 when not active).", nil, nil)
	descVIP         = prometheus.NewDesc("raftvip_vip_announced", "1 for each VIP this node announces now.", []string{"vip"}, nil)
)

type stateCollector struct {
	src       Source
	announced func() []string
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descRole, descTerm, descCommit, descApplied, descLastContact, descLease, descVIP} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Health()
	b := 0.0
	if s.Active {
		b = 1
	}
	contact := s.LastContact.Seconds()
	if s.LastContact < 0 {
		contact = -1
	}
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, b)
	ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, 1, s.Role)
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(s.Term))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(s.Commit))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(s.Applied))
	ch <- prometheus.MustNewConstMetric(descLastContact, prometheus.GaugeValue, contact)
	ch <- prometheus.MustNewConstMetric(descLease, prometheus.GaugeValue, s.LeaseRemaining.Seconds())
	if c.announced != nil {
		for _, v := range c.announced() {
			ch <- prometheus.MustNewConstMetric(descVIP, prometheus.GaugeValue, 1, v)
		}
	}
}

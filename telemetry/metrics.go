// Package telemetry holds Vigie's Prometheus metrics and its HTTP listener
// for /metrics, /healthz and /readyz.
package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are registered on their own registry, never the global one, so
// tests and several instances in one process do not collide.
type Metrics struct {
	Registry        *prometheus.Registry
	MessagesSent    *prometheus.CounterVec
	MessagesFailed  *prometheus.CounterVec
	MessagesRetried *prometheus.CounterVec
	Commands        *prometheus.CounterVec
	CommandLatency  *prometheus.HistogramVec
	backups         backupMetrics
}

// NewMetrics creates and registers all metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		MessagesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_messages_sent_total", Help: "Messages delivered, by transport.",
		}, []string{"transport"}),
		MessagesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_messages_failed_total", Help: "Messages given up on, by transport.",
		}, []string{"transport"}),
		MessagesRetried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_messages_retried_total", Help: "Delivery attempts that failed and will be retried, by transport and reason (rate_limited, transient).",
		}, []string{"transport", "reason"}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_commands_total", Help: "Commands handled, by command and outcome.",
		}, []string{"command", "outcome"}),
		CommandLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigie_command_duration_seconds", Help: "Time from receiving a command to queueing its reply.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"command"}),
	}
	m.Registry.MustRegister(m.MessagesSent, m.MessagesFailed, m.MessagesRetried, m.Commands, m.CommandLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.backups = newBackupMetrics(m.Registry)
	return m
}

// OutboxCounter reports how many messages a transport has in each state.
type OutboxCounter interface {
	OutboxCounts(ctx context.Context, transport string) (map[string]int, error)
}

// RegisterOutbox exports the outbox depth of a transport, read at scrape time.
func (m *Metrics) RegisterOutbox(transport string, c OutboxCounter) {
	for _, state := range []string{"pending", "failed"} {
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "vigie_outbox_messages",
			Help:        "Messages in the outbox, by transport and state (pending: not delivered yet; failed: given up).",
			ConstLabels: prometheus.Labels{"transport": transport, "state": state},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			counts, err := c.OutboxCounts(ctx, transport)
			if err != nil {
				return -1
			}
			return float64(counts[state])
		}))
	}
}

// SourceReading is what the metrics show of one source Vigie watches.
type SourceReading struct {
	Name        string // e.g. "nomad"
	Up          bool   // the last attempt to read it succeeded
	Blind       bool   // not read for longer than the grace period
	Partial     bool   // it answers but leaves part of its state out
	LastContact time.Time
	LastEvent   time.Time // when its latest events were stored
}

// RegisterSources exports, read at scrape time, whether Vigie sees each
// source and when it last heard from it.
func (m *Metrics) RegisterSources(read func() []SourceReading) {
	m.Registry.MustRegister(sourceCollector(read))
}

var (
	sourceUpDesc = prometheus.NewDesc("vigie_source_up",
		"1 if the last attempt to read the source (Nomad event stream, Consul health...) succeeded, else 0.", []string{"source"}, nil)
	sourceBlindDesc = prometheus.NewDesc("vigie_source_blind",
		"1 if Vigie has not read the source for longer than alerts.blind_after, else 0.", []string{"source"}, nil)
	sourcePartialDesc = prometheus.NewDesc("vigie_source_partial",
		"1 if the source answers but leaves part of its state out (Consul filtering checks by ACL), else 0.", []string{"source"}, nil)
	sourceContactDesc = prometheus.NewDesc("vigie_source_last_contact_timestamp_seconds",
		"When the source last answered (event, heartbeat, response), as a Unix time; absent before the first answer.", []string{"source"}, nil)
	sourceEventDesc = prometheus.NewDesc("vigie_source_last_event_timestamp_seconds",
		"When events from the source were last stored, as a Unix time; absent before the first.", []string{"source"}, nil)
)

type sourceCollector func() []SourceReading

func (sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sourceUpDesc
	ch <- sourceBlindDesc
	ch <- sourcePartialDesc
	ch <- sourceContactDesc
	ch <- sourceEventDesc
}

func (read sourceCollector) Collect(ch chan<- prometheus.Metric) {
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range read() {
		ch <- prometheus.MustNewConstMetric(sourceUpDesc, prometheus.GaugeValue, flag(s.Up), s.Name)
		ch <- prometheus.MustNewConstMetric(sourceBlindDesc, prometheus.GaugeValue, flag(s.Blind), s.Name)
		ch <- prometheus.MustNewConstMetric(sourcePartialDesc, prometheus.GaugeValue, flag(s.Partial), s.Name)
		for desc, at := range map[*prometheus.Desc]time.Time{sourceContactDesc: s.LastContact, sourceEventDesc: s.LastEvent} {
			if !at.IsZero() {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(at.UnixMilli())/1000, s.Name)
			}
		}
	}
}

// backupMetrics are the backups' figures, per target.
type backupMetrics struct {
	runs        *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.GaugeVec
	size        *prometheus.GaugeVec
}

func newBackupMetrics(r *prometheus.Registry) backupMetrics {
	b := backupMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_backup_runs_total", Help: "Backup runs ended, by target, action (backup, verify, restore, prune) and outcome (ok, failed, interrupted).",
		}, []string{"target", "action", "outcome"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigie_backup_last_success_timestamp_seconds", Help: "When the newest good backup of the target ended, as a Unix time (from S3).",
		}, []string{"target"}),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigie_backup_last_duration_seconds", Help: "How long the newest good backup of the target took.",
		}, []string{"target"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigie_backup_last_size_bytes", Help: "What the newest good backup of the target stores in S3 (compressed).",
		}, []string{"target"}),
	}
	r.MustRegister(b.runs, b.lastSuccess, b.duration, b.size)
	return b
}

// ObserveBackupRun counts a run that ended (backups.Observer).
func (m *Metrics) ObserveBackupRun(target, action, outcome string, _ time.Duration) {
	m.backups.runs.WithLabelValues(target, action, outcome).Inc()
}

// ObserveLastGoodBackup records the newest good backup of a target
// (backups.Observer).
func (m *Metrics) ObserveLastGoodBackup(target string, ended time.Time, took time.Duration, stored int64) {
	m.backups.lastSuccess.WithLabelValues(target).Set(float64(ended.UnixMilli()) / 1000)
	m.backups.duration.WithLabelValues(target).Set(took.Seconds())
	m.backups.size.WithLabelValues(target).Set(float64(stored))
}

// Package metrics holds campaignd's Prometheus metrics: provider calls by
// app, endpoint group and result, limiter waits, targets sent and failed,
// campaigns by status (read at scrape time), and asynq queue sizes. No label
// ever holds a secret: apps are config keys, groups are fixed names.
package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// Metrics are campaignd's own counters.
type Metrics struct {
	calls     *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	waits     *prometheus.HistogramVec
	refused   *prometheus.CounterVec
	targets   *prometheus.CounterVec
	backoffs  *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	ambiguous *prometheus.CounterVec
	repaired  prometheus.Counter
	dropped   *prometheus.CounterVec
	pending   prometheus.Gauge
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_provider_calls_total", Help: "Provider HTTP calls by app, endpoint group and result (ok, rate_limited, transient, auth, permanent).",
		}, []string{"app", "group", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "campaignd_provider_call_duration_seconds", Help: "Provider call latency by endpoint group.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"group"}),
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "campaignd_limiter_wait_seconds", Help: "Time calls waited for their limiter slot, by endpoint group.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 10),
		}, []string{"group"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_limiter_refused_total", Help: "Calls handed back to the queue because their slot was too far ahead.",
		}, []string{"app", "group"}),
		targets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_targets_total", Help: "Targets by outcome (sent, failed).",
		}, []string{"outcome"}),
		backoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_provider_rate_limited_total", Help: "Provider answers 429 / LimitException despite the limiter; each backs the group off for every process.",
		}, []string{"app", "group"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_provider_refusals_total", Help: "Calls the provider refused for rate (429, 403 LimitException, EngageLab 2002), by app and endpoint group: each lowers an adaptive group's effective limit (at most once a second).",
		}, []string{"app", "group"}),
		ambiguous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_provider_ambiguous_sends_total", Help: "Provider calls written in full whose answer never came (or not in full): the provider may have acted on them, and a retry may send twice.",
		}, []string{"app", "group"}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "campaignd_tasks_repaired_total", Help: "Missing or archived tasks queued again: by the reconciler for stalled campaigns, or before a duplicate submit of a campaign not final is answered.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "campaignd_status_events_dropped_total", Help: "Status events never published: reason full (the queue was full: progress first, never a final state), retries (not published within 2 minutes), shutdown.",
		}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "campaignd_status_events_pending", Help: "Status events of this process waiting to be published, or being published.",
		}),
	}
	for _, r := range []string{"full", "retries", "shutdown"} {
		m.dropped.WithLabelValues(r)
	}
	reg.MustRegister(m.calls, m.latency, m.waits, m.refused, m.targets, m.backoffs, m.refusals, m.ambiguous, m.repaired, m.dropped, m.pending)
	return m
}

// ProviderCall counts one provider call.
func (m *Metrics) ProviderCall(app, group, result string, took time.Duration) {
	m.calls.WithLabelValues(app, group, result).Inc()
	m.latency.WithLabelValues(group).Observe(took.Seconds())
	if result == provider.ClassRateLimited.String() {
		m.backoffs.WithLabelValues(app, group).Inc()
		m.refusals.WithLabelValues(app, group).Inc()
	}
}

// LimiterWait records how long a granted call waited.
func (m *Metrics) LimiterWait(app, group string, waited time.Duration) {
	m.waits.WithLabelValues(group).Observe(waited.Seconds())
}

// LimiterRefused counts a call handed back to the queue.
func (m *Metrics) LimiterRefused(app, group string) { m.refused.WithLabelValues(app, group).Inc() }

// Targets counts targets sent and failed.
func (m *Metrics) Targets(sent, failed int) {
	m.targets.WithLabelValues("sent").Add(float64(sent))
	m.targets.WithLabelValues("failed").Add(float64(failed))
}

// Observer adapts the metrics to provider.Observer.
func (m *Metrics) Observer() provider.Observer { return observer{m} }

type observer struct{ m *Metrics }

func (o observer) Observe(app string, g provider.Group, _ string, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		if k, ok := provider.ClassOf(err); ok {
			result = k.String()
		} else {
			result = "error"
		}
	}
	o.m.ProviderCall(app, string(g), result, took)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Written {
		o.m.ambiguous.WithLabelValues(app, string(g)).Inc()
	}
}

// TaskRepaired counts a task the reconciler queued again.
func (m *Metrics) TaskRepaired() { m.repaired.Inc() }

// StatusEventDropped counts a status event that was never published.
func (m *Metrics) StatusEventDropped(reason string) { m.dropped.WithLabelValues(reason).Inc() }

// StatusEventsPending sets how many status events wait to be published.
func (m *Metrics) StatusEventsPending(n int) { m.pending.Set(float64(n)) }

// StateCounter tells how many campaigns are in each state.
type StateCounter interface {
	CountByState(ctx context.Context) (map[campaigns.State]int64, error)
}

type campaignCollector struct {
	sc      StateCounter
	timeout time.Duration
	log     zerolog.Logger
	desc    *prometheus.Desc
}

// NewCampaignCollector exports campaignd_campaigns{status}, read at scrape time.
func NewCampaignCollector(sc StateCounter, timeout time.Duration, log zerolog.Logger) prometheus.Collector {
	return &campaignCollector{sc: sc, timeout: timeout, log: log,
		desc: prometheus.NewDesc("campaignd_campaigns", "Campaigns by status.", []string{"status"}, nil)}
}

func (c *campaignCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *campaignCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	counts, err := c.sc.CountByState(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("metrics: campaigns by status")
		return
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(s))
	}
}

type queueCollector struct {
	insp    *asynq.Inspector
	timeout time.Duration
	size    *prometheus.Desc
	state   *prometheus.Desc
	done    *prometheus.Desc
	failed  *prometheus.Desc
}

// NewQueueCollector exports asynq queue sizes, read at scrape time:
// asynq_queue_size{queue}, asynq_tasks{queue,state},
// asynq_tasks_processed_total{queue}, asynq_tasks_failed_total{queue}.
func NewQueueCollector(insp *asynq.Inspector) prometheus.Collector {
	return &queueCollector{insp: insp, timeout: 2 * time.Second,
		size:   prometheus.NewDesc("asynq_queue_size", "Tasks in the queue, every state.", []string{"queue"}, nil),
		state:  prometheus.NewDesc("asynq_tasks", "Tasks in the queue by state.", []string{"queue", "state"}, nil),
		done:   prometheus.NewDesc("asynq_tasks_processed_total", "Tasks processed (succeeded or failed).", []string{"queue"}, nil),
		failed: prometheus.NewDesc("asynq_tasks_failed_total", "Tasks that failed.", []string{"queue"}, nil),
	}
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.size
	ch <- q.state
	ch <- q.done
	ch <- q.failed
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := q.insp.Queues()
	if err != nil {
		return
	}
	for _, name := range queues {
		info, err := q.insp.GetQueueInfo(name)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(q.size, prometheus.GaugeValue, float64(info.Size), name)
		for st, n := range map[string]int{"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed} {
			ch <- prometheus.MustNewConstMetric(q.state, prometheus.GaugeValue, float64(n), name, st)
		}
		ch <- prometheus.MustNewConstMetric(q.done, prometheus.CounterValue, float64(info.ProcessedTotal), name)
		ch <- prometheus.MustNewConstMetric(q.failed, prometheus.CounterValue, float64(info.FailedTotal), name)
	}
}

// EffectiveLimit is an app's endpoint group's limit as campaignd spends it.
type EffectiveLimit struct {
	App, Group string
	Rate       float64 // calls/s now: the limit, or less after refusals
	Limit      float64 // the configured limit
}

// EffectiveLimits reads the effective limits of every adaptive group.
type EffectiveLimits interface {
	EffectiveLimits(ctx context.Context) ([]EffectiveLimit, error)
}

type limitCollector struct {
	src       EffectiveLimits
	timeout   time.Duration
	log       zerolog.Logger
	effective *prometheus.Desc
}

// NewLimitCollector exports campaignd_limit_effective{app,group}, read at
// scrape time.
func NewLimitCollector(src EffectiveLimits, timeout time.Duration, log zerolog.Logger) prometheus.Collector {
	return &limitCollector{src: src, timeout: timeout, log: log,
		effective: prometheus.NewDesc("campaignd_limit_effective",
			"Calls per second campaignd books an app's endpoint group at, for every process: the configured limit, or less while the provider refuses calls for rate (another client on the key).",
			[]string{"app", "group"}, nil)}
}

func (c *limitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.effective }

func (c *limitCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ls, err := c.src.EffectiveLimits(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("metrics: effective limits")
		return
	}
	for _, l := range ls {
		ch <- prometheus.MustNewConstMetric(c.effective, prometheus.GaugeValue, l.Rate, l.App, l.Group)
	}
}

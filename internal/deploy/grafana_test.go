package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/daemon"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/metrics"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/store"
)

// The Grafana dashboard shipped in deploy/grafana, as far as the checks need it.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string             `json:"refId"`
		Expr       string             `json:"expr"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's panels
}

type grafanaVariable struct {
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Query      json.RawMessage    `json:"query"` // a string, or {"query": "..."} for Prometheus query variables
	Definition string             `json:"definition"`
	Datasource *grafanaDatasource `json:"datasource"`
}

const dashboardPath = "deploy/grafana/campaignd.json"

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", dashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// flatPanels lists every panel, the panels of collapsed rows included.
func flatPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatPanels(p.Panels)...)
	}
	return out
}

// usesDatasourceVariable: the panel or target points at the dashboard's
// datasource variable, not at one Prometheus of one installation.
func usesDatasourceVariable(ds *grafanaDatasource) bool {
	return ds != nil && ds.Type == "prometheus" && (ds.UID == "${datasource}" || ds.UID == "$datasource")
}

var (
	// Metric names of campaignd's own metrics and of the collectors it
	// registers (asynq queues, Go and process).
	prefixedMetric = regexp.MustCompile(`\b((?:campaignd|asynq|process|go)_[a-zA-Z0-9_]+)`)
	// Any series selector: a name right before its label matchers, so a
	// metric without one of the prefixes above (say `up{…}`) is checked too.
	selectorMetric = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{`)
)

// metricNames returns the metric names a PromQL expression (or a Grafana
// label_values query) reads.
func metricNames(expr string) []string {
	var out []string
	for _, re := range []*regexp.Regexp{prefixedMetric, selectorMetric} {
		for _, m := range re.FindAllStringSubmatch(expr, -1) {
			if name := m[1]; name != "label_values" && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// TestGrafanaDashboardShape checks what Grafana needs to show every panel:
// titles, targets, the datasource variable, unique ids, a layout without
// overlaps.
func TestGrafanaDashboardShape(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: both are needed for provisioning", d.UID, d.Title)
	}
	var dsVar *grafanaVariable
	for i, v := range d.Templating.List {
		if v.Name == "datasource" {
			dsVar = &d.Templating.List[i]
		} else if v.Type == "query" && !usesDatasourceVariable(v.Datasource) {
			t.Errorf("variable %s: datasource %+v, want the ${datasource} variable", v.Name, v.Datasource)
		}
	}
	if dsVar == nil || dsVar.Type != "datasource" || string(dsVar.Query) != `"prometheus"` {
		t.Fatalf("templating needs a variable \"datasource\" of type datasource over prometheus, got %+v", dsVar)
	}

	panels := flatPanels(d.Panels)
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]string{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	graphs := 0
	for _, p := range panels {
		name := p.Title
		if strings.TrimSpace(p.Title) == "" {
			t.Errorf("panel id %d (%s) has no title", p.ID, p.Type)
			name = p.Type
		}
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or also used by %q", name, p.ID, prev)
		}
		ids[p.ID] = name
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", name, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at x=%d y=%d", name, other, x, y)
					x, y = 1<<30, 1<<30 // one line per pair is enough
					continue
				}
				used[cell{x, y}] = name
			}
		}
		if p.Type == "row" {
			if len(p.Targets) != 0 {
				t.Errorf("row %q has targets", name)
			}
			continue
		}
		graphs++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", name)
		}
		if !usesDatasourceVariable(p.Datasource) {
			t.Errorf("panel %q: datasource %+v, want {type: prometheus, uid: ${datasource}}", name, p.Datasource)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %s: empty expr", name, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", name, tg.RefID)
			}
			refs[tg.RefID] = true
			if !usesDatasourceVariable(tg.Datasource) {
				t.Errorf("panel %q target %s: datasource %+v, want the ${datasource} variable", name, tg.RefID, tg.Datasource)
			}
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q target %s: unbalanced brackets in %s", name, tg.RefID, tg.Expr)
			}
		}
	}
	if graphs < 10 {
		t.Errorf("only %d panels with queries", graphs)
	}
}

// TestGrafanaDashboardMetricsExist checks every metric the dashboard reads
// against what campaignd really exports: the /metrics of a running daemon
// (real Redis, NATS and provider emulator), plus, for the counters and
// histograms that only show up there after their first observation, the
// descriptions of the collectors the daemon registers, built the way the
// daemon builds them. And the other way round: every campaignd_ and asynq_
// metric has a panel.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	exported := exportedMetrics(t)

	// where each metric is used
	uses := map[string][]string{}
	for _, p := range flatPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, n := range metricNames(tg.Expr) {
				uses[n] = append(uses[n], "panel "+strings.TrimSpace(p.Title))
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		var obj struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &obj); err == nil && obj.Query != "" {
			q += " " + obj.Query
		} else {
			var s string
			if json.Unmarshal(v.Query, &s) == nil {
				q += " " + s
			}
		}
		for _, n := range metricNames(q) {
			uses[n] = append(uses[n], "variable "+v.Name)
		}
	}
	if len(uses) == 0 {
		t.Fatal("no metric found in the dashboard")
	}

	used := map[string]bool{} // families the dashboard reads
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		family, ok := familyOf(n, exported)
		if !ok {
			t.Errorf("%s (in %s) is not a metric campaignd exports", n, strings.Join(uses[n], ", "))
			continue
		}
		used[family] = true
	}
	for name := range exported {
		if (strings.HasPrefix(name, "campaignd_") || strings.HasPrefix(name, "asynq_")) && !used[name] {
			t.Errorf("campaignd exports %s but no panel of %s shows it", name, dashboardPath)
		}
	}
	t.Logf("%d metric names in the dashboard checked against %d exported families", len(names), len(exported))
}

// familyOf maps a name used in PromQL to its exported family: the family
// itself, or a histogram's (summary's) _bucket, _sum and _count series.
func familyOf(name string, exported map[string]string) (string, bool) {
	if _, ok := exported[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if !found {
			continue
		}
		switch kind := exported[base]; {
		case kind == "histogram":
			return base, true
		case kind == "summary" && suffix != "_bucket":
			return base, true
		}
	}
	return "", false
}

// exportedMetrics returns campaignd's metric families with their type
// ("counter", "gauge", "histogram", "summary"; "" when only a description
// told the name).
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	rd := testenv.StartRedis(t)
	nt := testenv.StartNATS(t)
	sim, err := pushsim.Start(pushsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })

	out := map[string]string{}

	// 1. A real daemon's /metrics: everything that has a value without any
	// campaign — the campaigns and task-window gauges read from Redis, the
	// Go and process collectors.
	cfg := config.Default()
	cfg.Redis.URL = rd.URL
	cfg.NATS.URL = nt.URL
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Worker.Concurrency = 2
	cfg.Apps = map[string]config.App{"default": {Provider: "easemob", BaseURL: sim.URL(), Org: "o", App: "a",
		ClientID: "pushsim", ClientSecret: "pushsim-secret"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dmn, err := daemon.New(ctx, cfg, daemon.Options{Logger: zerolog.Nop()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = dmn.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + dmn.Addr()
	testenv.WaitHTTP(t, base+"/readyz")
	scraped := scrapeTypes(t, base+"/metrics")
	for _, must := range []string{"campaignd_campaigns", "campaignd_task_slots_running", "process_start_time_seconds", "go_goroutines"} {
		if _, ok := scraped[must]; !ok {
			t.Fatalf("the daemon's /metrics lacks %s; it has %v", must, sortedKeys(scraped))
		}
	}
	for n, k := range scraped {
		out[n] = k
	}

	// 2. The collectors of package metrics, registered the way daemon.New
	// registers them, listed from their descriptions: a CounterVec or
	// HistogramVec has no series (and no line in /metrics) before its first
	// observation, and the asynq queue gauges none before the first queue.
	rec := &recordingRegistry{Registry: prometheus.NewRegistry()}
	metrics.New(rec)
	rdb := rd.Client(t)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rd.Addr})
	t.Cleanup(func() { _ = insp.Close() })
	rec.MustRegister(metrics.NewCampaignCollector(store.New(rdb, store.Options{}), 2*time.Second, zerolog.Nop()))
	rec.MustRegister(metrics.NewQueueCollector(insp))
	rec.MustRegister(metrics.NewLimitCollector(noLimits{}, time.Second, zerolog.Nop()))
	described := rec.described(t)
	for n, k := range described {
		if prev, ok := out[n]; ok && k != "" && prev != k {
			t.Errorf("%s: /metrics says %s, its collector %s", n, prev, k)
		}
		if out[n] == "" {
			out[n] = k
		}
	}
	// The daemon scrape and the descriptions agree on what both show.
	for n := range scraped {
		if strings.HasPrefix(n, "campaignd_") && !strings.HasPrefix(n, "campaignd_task") {
			if _, ok := described[n]; !ok {
				t.Errorf("%s is in the daemon's /metrics but not described by package metrics", n)
			}
		}
	}
	return out
}

// recordingRegistry is a real registry that also keeps what was registered,
// so that each collector's Describe can be read.
type recordingRegistry struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var descFQName = regexp.MustCompile(`fqName: "([^"]+)"`)

// described lists the metric names of every registered collector's
// descriptions, with their type: a vector's from its Go type, any other's
// from what the registry gathers (a plain counter or histogram, and the
// scrape-time collectors, have series at once).
func (r *recordingRegistry) described(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range r.collectors {
		kind := ""
		switch c.(type) {
		case *prometheus.HistogramVec:
			kind = "histogram"
		case *prometheus.SummaryVec:
			kind = "summary"
		case *prometheus.CounterVec:
			kind = "counter"
		case *prometheus.GaugeVec:
			kind = "gauge"
		}
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for desc := range ch {
			m := descFQName.FindStringSubmatch(desc.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", desc)
			}
			out[m[1]] = kind
		}
	}
	if len(out) == 0 {
		t.Fatal("no metric described")
	}
	families, err := r.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range families {
		kind := strings.ToLower(mf.GetType().String())
		if prev, ok := out[mf.GetName()]; !ok {
			t.Errorf("%s gathered but not described", mf.GetName())
		} else if prev != "" && prev != kind {
			t.Errorf("%s: described as %s, gathered as %s", mf.GetName(), prev, kind)
		}
		out[mf.GetName()] = kind
	}
	return out
}

// scrapeTypes reads the families and their types from a text exposition.
func scrapeTypes(t *testing.T, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	got := metricNames(`histogram_quantile(0.99, sum by (group, le) (rate(campaignd_limiter_wait_seconds_bucket{job=~"$job"}[$__rate_interval]))) + on() group_left up{job="x"} + label_values(campaignd_campaigns, job)`)
	want := []string{"campaignd_limiter_wait_seconds_bucket", "campaignd_campaigns", "up"}
	if !slices.Equal(got, want) {
		t.Fatalf("metricNames = %v, want %v", got, want)
	}
	exported := map[string]string{"campaignd_limiter_wait_seconds": "histogram", "campaignd_targets_total": "counter"}
	for name, ok := range map[string]bool{
		"campaignd_limiter_wait_seconds_bucket": true,
		"campaignd_limiter_wait_seconds_count":  true,
		"campaignd_targets_total":               true,
		"campaignd_targets_total_count":         false, // a counter has no _count series
		"campaignd_targets":                     false,
	} {
		if _, got := familyOf(name, exported); got != ok {
			t.Errorf("familyOf(%s) = %v, want %v", name, got, ok)
		}
	}
}

// noLimits has no adaptive app (the daemon's collector reads Redis; here
// only its description counts).
type noLimits struct{}

func (noLimits) EffectiveLimits(context.Context) ([]metrics.EffectiveLimit, error) { return nil, nil }

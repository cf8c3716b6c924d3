package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"gopkg.in/yaml.v3"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/tlsconf"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/scheduler"
	"github.com/campaignd/campaignd/worker"
)

// Environment variables that override the file.
const (
	EnvRedisURL = "CAMPAIGND_REDIS_URL"
	EnvNATSURL  = "CAMPAIGND_NATS_URL"
	EnvHTTPAddr = "CAMPAIGND_HTTP_ADDR"
)

// Default returns the configuration before any file is read.
func Default() Config {
	return Config{
		Redis: Redis{URL: "redis://127.0.0.1:6379/0"},
		NATS:  NATS{URL: "nats://127.0.0.1:4222"},
		HTTP:  HTTP{Addr: "127.0.0.1:8080"},
	}
}

// DefaultConcurrency is worker.concurrency when the config leaves it out
// (or 0): 50, or 3 per configured app when that is more (capped at
// 10,000). A batch task holds its worker while its calls wait for their
// slots, so every app sending at its limit keeps about two workers busy
// in each process (one feeding its calls, one whose calls wait), and a
// third lets its tasks that went back come in again at once: 100 apps on
// 50 workers reached about half their limits (docs/BENCHMARKS.md).
func DefaultConcurrency(apps int) int { return min(max(50, 3*apps), 10000) }

// The provider's task-window caps (docs/interface.md §2), the defaults of
// apps.<app>.task_window.
const (
	DefaultMaxCreated   = 3
	DefaultTaskWindow   = 5 * time.Minute
	DefaultMaxRunning   = 3
	DefaultTaskDuration = 5 * time.Minute
)

// WithDefaults returns a copy of c with every default filled in and what
// the keys imply worked out: worker.concurrency from the apps; each app's
// timezone (UTC), its Location, its limits (provider.DefaultLimits) and
// task_window; each schedule's Campaign from its YAML. Values it cannot
// work out (an unknown zone, a campaign that does not decode) are left
// for Validate to name. c itself is not changed. Load applies it before
// Validate; so does the daemon for a config built in code.
func (c Config) WithDefaults() Config {
	if c.Worker.Concurrency == 0 {
		c.Worker.Concurrency = DefaultConcurrency(len(c.Apps))
	}
	if c.Apps != nil {
		apps := make(map[string]App, len(c.Apps))
		for name, a := range c.Apps {
			apps[name] = a.withDefaults()
		}
		c.Apps = apps
	}
	c.Schedules = slices.Clone(c.Schedules)
	for i := range c.Schedules {
		s := &c.Schedules[i]
		if camp, _, err := s.decodeCampaign(); err == nil && camp != nil {
			s.Campaign = *camp
			s.Campaign.ID = ""
		}
	}
	return c
}

func (a App) withDefaults() App {
	if a.Timezone == "" {
		a.Timezone = "UTC"
	}
	if loc, err := time.LoadLocation(a.Timezone); err == nil {
		a.Location = loc
	}
	lim := make(Limits, len(provider.Groups))
	for g, v := range a.Limits {
		lim[g] = v
	}
	for _, g := range provider.Groups {
		if lim[g] == 0 {
			lim[g] = provider.DefaultLimits[g]
		}
	}
	a.Limits = lim
	tw := &a.TaskWindow
	if tw.MaxCreated == 0 {
		tw.MaxCreated = DefaultMaxCreated
	}
	if tw.Window == 0 {
		tw.Window = Duration(DefaultTaskWindow)
	}
	if tw.MaxRunning == 0 {
		tw.MaxRunning = DefaultMaxRunning
	}
	if tw.TaskDuration == 0 {
		tw.TaskDuration = Duration(DefaultTaskDuration)
	}
	return a
}

// decodeCampaign decodes the schedule's campaign from its YAML, with the
// id its ticks have (scheduler.ProbeID), normalized. idSet tells that the
// YAML sets an id (ticks set their own). It returns nil, and the field
// errors, for a campaign that does not decode.
func (s Schedule) decodeCampaign() (camp *campaigns.Campaign, idSet bool, err error) {
	if s.CampaignRaw == nil {
		return nil, false, errors.New("is required")
	}
	raw, err := json.Marshal(s.CampaignRaw)
	if err != nil {
		return nil, false, err
	}
	var probe map[string]any
	_ = json.Unmarshal(raw, &probe)
	_, idSet = probe["id"]
	probe["id"] = scheduler.ProbeID(s.Name)
	raw, _ = json.Marshal(probe)
	camp, ferrs := campaigns.Decode(raw)
	if len(ferrs) > 0 {
		return nil, idSet, fieldErrors(ferrs)
	}
	camp.Normalize()
	return camp, idSet, nil
}

// fieldErrors are a campaign's decoding errors, each naming its field.
type fieldErrors []campaigns.FieldError

func (f fieldErrors) Error() string {
	msgs := make([]string, len(f))
	for i, fe := range f {
		msgs[i] = fe.Field + ": " + fe.Message
	}
	return strings.Join(msgs, "; ")
}

// UnmarshalYAML reads redis.tls: true or false, or the mapping of its
// files (any other key is an error naming it).
func (t *RedisTLS) UnmarshalYAML(n *yaml.Node) error {
	const want = "redis.tls: want true, false or {ca, cert, key, server_name}"
	switch n.Kind {
	case yaml.ScalarNode:
		var b bool
		if err := n.Decode(&b); err != nil {
			return errors.New(want)
		}
		*t = RedisTLS{Enabled: b}
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "ca", "cert", "key", "server_name":
			default:
				return fmt.Errorf("unknown key %q: %s", k, want)
			}
		}
		type plain RedisTLS
		var p plain
		if err := n.Decode(&p); err != nil {
			return fmt.Errorf("%s: %w", want, err)
		}
		*t = RedisTLS(p)
		t.Enabled = true
		return nil
	}
	return errors.New(want)
}

// MarshalYAML writes redis.tls as it is read: a bool, or its files.
func (t RedisTLS) MarshalYAML() (any, error) {
	if t.Files() == (tlsconf.Files{}) {
		return t.Enabled, nil
	}
	type plain RedisTLS
	return plain(t), nil
}

// UnmarshalYAML reads "5m", "10s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("want a duration such as 5m or 10s")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 5m or 10s, got %q", s)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads "64MiB", "512k", "1g" (binary units) or bytes.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("want a size such as 64MiB")
	}
	v, err := units.RAMInBytes(s)
	if err != nil {
		return fmt.Errorf("want a size such as 64MiB or 512k, got %q", s)
	}
	*z = Size(v)
	return nil
}

// MarshalYAML writes the size as text.
func (z Size) MarshalYAML() (any, error) { return units.BytesSize(float64(z)), nil }

// MarshalJSON writes the size as text (for logs).
func (z Size) MarshalJSON() ([]byte, error) { return json.Marshal(units.BytesSize(float64(z))) }

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as text (for logs).
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Variables: ${VAR} is replaced by the environment's value after the
// YAML is read, so that a value may hold any character (a password with
// '#', '"', ': ', '}' or a leading '*' is taken as it is, never read as
// YAML) and ${VAR} may stand anywhere a value may, quoted or not, in
// block or flow style. Before parsing, each ${VAR} becomes a word that
// YAML reads as plain text everywhere (placeholders); expandNode then
// puts the values into the parsed scalars.

// placeholderRef is one placeholder word.
var placeholderRef = regexp.MustCompile(`__campaignd_var_([0-9]+)__`)

// placeholders replaces each ${VAR} in data with a placeholder word and
// returns the variables' names, indexed by the words' numbers.
func placeholders(data []byte) ([]byte, []string) {
	var names []string
	out := varRef.ReplaceAllFunc(data, func(m []byte) []byte {
		names = append(names, string(m[2:len(m)-1]))
		return fmt.Appendf(nil, "__campaignd_var_%d__", len(names)-1)
	})
	return out, names
}

// expandNode puts getenv's values for the placeholders in every scalar
// of n, and records the values put in by name. A plain scalar is typed
// again from its new text (`replicas: ${N}` is a number); a quoted one
// stays a string.
func expandNode(n *yaml.Node, names []string, getenv func(string) string, used map[string]string) {
	if n.Kind == yaml.ScalarNode && placeholderRef.MatchString(n.Value) {
		n.Value = placeholderRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := names[placeholderIndex(m)]
			v := getenv(name)
			used[name] = v
			return v
		})
		if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			n.Tag = ""
		}
	}
	for _, c := range n.Content {
		expandNode(c, names, getenv, used)
	}
}

func placeholderIndex(word string) int {
	i, _ := strconv.Atoi(placeholderRef.FindStringSubmatch(word)[1])
	return i
}

// unplaceholder writes the placeholders of msg back as ${VAR}.
func unplaceholder(msg string, names []string) string {
	return placeholderRef.ReplaceAllStringFunc(msg, func(m string) string {
		if i := placeholderIndex(m); i < len(names) {
			return "${" + names[i] + "}"
		}
		return m
	})
}

// Load reads defaults, then the file (with ${VAR} expanded by getenv; keys
// unknown to campaignd are errors), then the CAMPAIGND_* overrides, and
// validates the result.
func Load(path string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		fileSetsRedisURL, err := parseExpanded(&cfg, data, getenv)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if cfg.Redis.Sentinel != nil && !fileSetsRedisURL {
			cfg.Redis.URL = "" // the default URL is not wanted beside sentinel
		}
	}
	if v := getenv(EnvRedisURL); v != "" {
		cfg.Redis.URL = v
	}
	if v := getenv(EnvNATSURL); v != "" {
		cfg.NATS.URL = v
	}
	if v := getenv(EnvHTTPAddr); v != "" {
		cfg.HTTP.Addr = v
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Parse decodes YAML over cfg, rejecting unknown keys.
func Parse(cfg *Config, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return yamlError(err)
	}
	return nil
}

// parseExpanded decodes the file's YAML over cfg with ${VAR} expanded in
// its values, rejecting unknown keys, and tells whether the file sets
// redis.url. An error shows ${VAR}, never the value put in for it; its
// line numbers are the file's.
func parseExpanded(cfg *Config, data []byte, getenv func(string) string) (setsRedisURL bool, err error) {
	text, names := placeholders(data)
	// Unknown keys and syntax first, before any value is put in.
	if err := (&Config{}).knownKeys(text); err != nil {
		return false, errors.New(unplaceholder(err.Error(), names))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return false, errors.New(unplaceholder(yamlError(err).Error(), names))
	}
	if doc.Kind == 0 { // an empty file
		return false, nil
	}
	used := map[string]string{}
	expandNode(&doc, names, getenv, used)
	if err := doc.Decode(cfg); err != nil {
		return false, errors.New(hideValues(yamlError(err).Error(), used))
	}
	var raw struct {
		Redis map[string]any `yaml:"redis"`
	}
	_ = doc.Decode(&raw)
	_, setsRedisURL = raw.Redis["url"]
	return setsRedisURL, nil
}

// quotedValue is a value as YAML's errors quote it, cut to its first
// characters and "..." when long.
var quotedValue = regexp.MustCompile("`([^`]*)`")

// hideValues writes the variables' values in msg as ${VAR}: whole, or
// quoted and cut short as YAML's errors show them.
func hideValues(msg string, used map[string]string) string {
	msg = quotedValue.ReplaceAllStringFunc(msg, func(q string) string {
		shown := strings.TrimSuffix(q[1:len(q)-1], "...")
		for name, v := range used {
			if shown != "" && strings.HasPrefix(v, shown) {
				return "${" + name + "}"
			}
		}
		return q
	})
	for name, v := range used {
		if len(v) >= 3 { // a value too short to tell apart is left
			msg = strings.ReplaceAll(msg, v, "${"+name+"}")
		}
	}
	return msg
}

// knownKeys reports the file's unknown keys and syntax errors, and
// nothing else (its values are not yet expanded: `${N}` for a number is
// not an error here).
func (c *Config) knownKeys(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if strings.HasPrefix(err.Error(), "yaml: ") {
			return yamlError(err) // syntax
		}
		return nil // a value's own check (redis.tls): once expanded
	}
	var unknown []string
	for _, e := range te.Errors {
		if strings.Contains(e, "not found in type") {
			unknown = append(unknown, e)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	return yamlError(&yaml.TypeError{Errors: unknown})
}

// yamlError is a YAML error on one line, without the library's prefixes.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n"), "\n", ";")
	msg = strings.Join(strings.Fields(msg), " ")
	return errors.New(msg)
}

var scheduleName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the config as it will run (c.WithDefaults()), changing
// nothing. The error is one line naming every wrong key, e.g. `config:
// apps.default.provider: unknown provider "x"`.
func (c Config) Validate() error {
	return c.WithDefaults().validate()
}

// validate checks a config whose defaults are filled in; it changes
// nothing.
func (c Config) validate() error {
	var errs []string
	bad := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	if sn := c.Redis.Sentinel; sn != nil {
		if c.Redis.URL != "" {
			bad("redis.url", "is set together with redis.sentinel: use one of them")
		}
		if sn.Master == "" {
			bad("redis.sentinel.master", "is required (the name the sentinels monitor)")
		}
		if len(sn.Addrs) == 0 {
			bad("redis.sentinel.addrs", "is required: host:port of the sentinels")
		}
		for i, a := range sn.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad(fmt.Sprintf("redis.sentinel.addrs[%d]", i), "want host:port, got %q", a)
			}
		}
		if c.Redis.DB < 0 {
			bad("redis.db", "must be 0 or more")
		}
	} else {
		if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("redis.url", "want redis://host:port/db or rediss://…")
		}
		if c.Redis.Username != "" || c.Redis.Password != "" || c.Redis.DB != 0 {
			bad("redis.password", "username, password and db go in redis.url (redis://user:password@host:port/db, rediss:// for TLS), or with redis.sentinel")
		}
		if u, err := url.Parse(c.Redis.URL); err == nil && u.Scheme == "redis" && c.Redis.TLS.Enabled {
			bad("redis.tls", "needs a rediss:// redis.url (redis:// is plain TCP)")
		}
	}
	if c.Redis.TLS.Enabled {
		if _, err := c.Redis.TLS.Files().Config(); err != nil {
			var fe *tlsconf.FieldError
			if errors.As(err, &fe) {
				bad("redis.tls."+fe.Field, "%v", fe.Err)
			} else {
				bad("redis.tls", "%v", err)
			}
		}
	}
	if field, err := c.NATS.Auth().Check(); err != nil {
		bad("nats."+field, "%v", err)
	}
	for i, one := range strings.Split(c.NATS.URL, ",") {
		key := "nats.url"
		if strings.Contains(c.NATS.URL, ",") {
			key = fmt.Sprintf("nats.url (server %d)", i+1)
		}
		if u, err := url.Parse(strings.TrimSpace(one)); err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "ws" && u.Scheme != "wss") {
			bad(key, "want nats://host:port, or a comma-separated list of them")
		}
	}
	if c.NATS.Replicas < 0 || c.NATS.Replicas > 5 {
		bad("nats.replicas", "must be 1..5, got %d", c.NATS.Replicas)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr", "want host:port, got %q", c.HTTP.Addr)
	}
	if c.HTTP.BasicAuth.User != "" && c.HTTP.BasicAuth.Password == "" {
		bad("http.basic_auth.password", "is empty while basic_auth.user is set (is the variable it names set?)")
	}
	if c.HTTP.BasicAuth.User == "" && c.HTTP.BasicAuth.Password != "" {
		bad("http.basic_auth.user", "is empty while a password is set")
	}
	if c.Worker.Concurrency < 0 || c.Worker.Concurrency > 10000 {
		bad("worker.concurrency", "must be 1..10000 (or 0: from the apps configured), got %d", c.Worker.Concurrency)
	}
	if c.Worker.StallAfter < 0 {
		bad("worker.stall_after", "must be a positive duration, got %s", c.Worker.StallAfter.D())
	}
	if c.Worker.PlanMemory != 0 && c.Worker.PlanMemory < 1<<20 {
		bad("worker.plan_memory", "must be at least 1MiB, got %d bytes", c.Worker.PlanMemory)
	}
	if d := c.Worker.PlanSpillDir; d != "" && d != PlanSpillOff {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			bad("worker.plan_spill_dir", "must be an existing directory or %q, got %q", PlanSpillOff, d)
		}
	}
	if len(c.Apps) == 0 {
		bad("apps", "at least one app is required")
	}
	for name, a := range c.Apps {
		a.validate("apps."+name, bad)
	}
	names := map[string]bool{}
	for i := range c.Schedules {
		s := c.Schedules[i]
		key := fmt.Sprintf("schedules[%d]", i)
		if !scheduleName.MatchString(s.Name) {
			bad(key+".name", "must match [A-Za-z0-9_-]{1,64}, got %q", s.Name)
		} else if names[s.Name] {
			bad(key+".name", "%q is used twice", s.Name)
		}
		names[s.Name] = true
		loc := time.UTC
		if s.Timezone != "" {
			l, err := time.LoadLocation(s.Timezone)
			if err != nil {
				bad(key+".timezone", "unknown zone %q", s.Timezone)
			} else {
				loc = l
			}
		}
		if _, err := scheduler.Parse(s.Cron, loc); err != nil {
			bad(key+".cron", "%v", err)
		} else if strings.HasPrefix(strings.TrimSpace(s.Cron), "@every") {
			// its ticks count from each process's start: processes would
			// disagree on them, and a tick could fire once per process
			bad(key+".cron", "@every is not supported (its ticks count from each process's start); use a cron spec, e.g. \"*/5 * * * *\"")
		}
		camp, idSet, err := s.decodeCampaign()
		if idSet {
			bad(key+".campaign.id", "is set per tick; leave it out")
		}
		var ferrs []campaigns.FieldError
		switch fe := fieldErrors(nil); {
		case errors.As(err, &fe):
			ferrs = fe
		case err != nil:
			bad(key+".campaign", "%v", err)
			continue
		default:
			ferrs = camp.Validate(campaigns.Env{Apps: c.AppInfos(), Now: clock.Real{}.Now(), Kinds: worker.Kinds()}) // as of loading
		}
		for _, fe := range ferrs {
			bad(key+".campaign."+fe.Field, "%s", fe.Message)
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// validate checks an app whose defaults are filled in; it changes nothing.
func (a App) validate(key string, bad func(key, format string, args ...any)) {
	switch a.Provider {
	case provider.Easemob:
		if a.Org == "" {
			bad(key+".org", "is required for easemob")
		}
		if a.App == "" {
			bad(key+".app", "is required for easemob")
		}
		if a.AppToken == "" && (a.ClientID == "" || a.ClientSecret == "") {
			bad(key+".client_id", "easemob needs client_id and client_secret, or app_token (is the variable they name set?)")
		}
	case provider.EngageLab:
		if a.AppKey == "" {
			bad(key+".app_key", "is required for engagelab")
		}
		if a.AppSecret == "" {
			bad(key+".app_secret", "is required for engagelab")
		}
	default:
		bad(key+".provider", "unknown provider %q (want %s)", a.Provider, strings.Join(provider.Names(), " or "))
	}
	if u, err := url.Parse(a.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad(key+".base_url", "want an absolute http(s) URL, got %q", a.BaseURL)
	}
	if _, err := time.LoadLocation(a.Timezone); err != nil {
		bad(key+".timezone", "unknown zone %q", a.Timezone)
	}
	for g, v := range a.Limits {
		switch {
		case !slices.Contains(provider.Groups, g):
			bad(key+".limits."+string(g), "unknown limit group")
		case v < 0 || math.IsNaN(v) || math.IsInf(v, 0):
			bad(key+".limits."+string(g), "must be a positive number of calls per second, got %v", v)
		}
	}
	tw := a.TaskWindow
	if tw.MaxCreated < 0 {
		bad(key+".task_window.max_created", "must be positive")
	}
	if tw.MaxRunning < 0 {
		bad(key+".task_window.max_running", "must be positive")
	}
	if tw.Window < 0 {
		bad(key+".task_window.window", "must be positive")
	}
	if tw.TaskDuration < 0 {
		bad(key+".task_window.task_duration", "must be positive")
	}
}

// UnmarshalYAML reads the limits, naming a group that does not exist.
func (l *Limits) UnmarshalYAML(n *yaml.Node) error {
	var m map[string]float64
	if err := n.Decode(&m); err != nil {
		return err
	}
	out := make(Limits, len(m))
	for k, v := range m {
		if !slices.Contains(provider.Groups, provider.Group(k)) {
			names := make([]string, len(provider.Groups))
			for i, g := range provider.Groups {
				names[i] = string(g)
			}
			return fmt.Errorf("line %d: unknown limit group %q (want one of %s)", n.Line, k, strings.Join(names, ", "))
		}
		out[provider.Group(k)] = v
	}
	*l = out
	return nil
}

// Limit returns the calls per second allowed for group g.
func (a App) Limit(g provider.Group) float64 {
	if v := a.Limits[g]; v != 0 {
		return v
	}
	return provider.DefaultLimits[g]
}

// AppInfos describes the apps for campaign validation.
func (c *Config) AppInfos() map[string]campaigns.AppInfo {
	out := make(map[string]campaigns.AppInfo, len(c.Apps))
	for name, a := range c.Apps {
		loc := a.Location
		if loc == nil {
			loc = time.UTC
		}
		out[name] = campaigns.AppInfo{Provider: a.Provider, Location: loc}
	}
	return out
}

const masked = "***"

func mask(s string) string {
	if s == "" {
		return ""
	}
	return masked
}

// RedactURL hides the password of a URL's user info.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return masked
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), masked)
		}
	}
	// url escapes the mask's asterisks; a person reads "***".
	return strings.Replace(u.String(), ":%2A%2A%2A@", ":"+masked+"@", 1)
}

// Sanitized returns a copy safe to log: every secret is replaced by "***".
func (c Config) Sanitized() Config {
	out := c
	out.Redis.URL = RedactURL(c.Redis.URL)
	out.Redis.Password = mask(c.Redis.Password)
	if c.Redis.Sentinel != nil {
		sn := *c.Redis.Sentinel
		sn.Password = mask(sn.Password)
		out.Redis.Sentinel = &sn
	}
	out.NATS.URL = RedactURL(c.NATS.URL)
	out.NATS.Password = mask(c.NATS.Password)
	out.NATS.Token = mask(c.NATS.Token)
	out.HTTP.BasicAuth.Password = mask(c.HTTP.BasicAuth.Password)
	out.Apps = make(map[string]App, len(c.Apps))
	for k, a := range c.Apps {
		a.ClientSecret = mask(a.ClientSecret)
		a.AppToken = mask(a.AppToken)
		a.AppSecret = mask(a.AppSecret)
		a.Location = nil
		out.Apps[k] = a
	}
	out.Schedules = append([]Schedule(nil), c.Schedules...)
	return out
}

// Fields returns the config as YAML key paths and values
// (apps.default.limits.push_single → 10), sorted, for one log line; call
// it on a Sanitized copy. Unset (empty) values are left out.
func (c Config) Fields() ([][2]string, error) {
	raw, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: fields: %w", err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		return nil, fmt.Errorf("config: fields: %w", err)
	}
	var out [][2]string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, x[k])
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), e)
			}
		case nil:
		default:
			if v := fmt.Sprint(x); v != "" {
				out = append(out, [2]string{prefix, v})
			}
		}
	}
	walk("", tree)
	return out, nil
}

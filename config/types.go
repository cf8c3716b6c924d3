// Package config loads campaignd's YAML configuration (docs/interface.md §2):
// defaults, then the file with ${VAR} expanded from the environment, then
// CAMPAIGND_* environment overrides; validated once, with errors naming the
// key; and a sanitized copy safe to log.
package config

import (
	"time"

	"github.com/campaignd/campaignd/internal/natsconn"
	"github.com/campaignd/campaignd/internal/tlsconf"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// Config is the whole configuration.
type Config struct {
	Redis     Redis          `yaml:"redis"`
	NATS      NATS           `yaml:"nats"`
	HTTP      HTTP           `yaml:"http"`
	Worker    Worker         `yaml:"worker"`
	Apps      map[string]App `yaml:"apps"`
	Schedules []Schedule     `yaml:"schedules"`
}

// Redis connection.
type Redis struct {
	// URL: redis://[user:password@]host:port/db, rediss:// for TLS. Not
	// with Sentinel.
	URL string `yaml:"url"`
	// Sentinel: the master is found through these sentinels (high
	// availability); Username, Password, DB and TLS are then the master's.
	Sentinel *Sentinel `yaml:"sentinel,omitempty"`
	Username string    `yaml:"username,omitempty"`
	Password string    `yaml:"password,omitempty"`
	DB       int       `yaml:"db,omitempty"`
	// TLS: true for TLS with the system's roots, or a private CA and a
	// client certificate (RedisTLS). Sentinel form: TLS to the sentinels
	// and the servers; URL form: the files for a rediss:// URL.
	TLS RedisTLS `yaml:"tls,omitempty"`
}

// RedisTLS is redis.tls: `true` (TLS with the system's roots), or
// `{ca, cert, key, server_name}`: the CA to trust instead of the
// system's, a client certificate and its key (mutual TLS), the name the
// server's certificate must carry (default: the host dialled).
type RedisTLS struct {
	Enabled    bool   `yaml:"-"`
	CA         string `yaml:"ca,omitempty"`
	Cert       string `yaml:"cert,omitempty"`
	Key        string `yaml:"key,omitempty"`
	ServerName string `yaml:"server_name,omitempty"`
}

// Files are the TLS files to build the connection's tls.Config from.
func (t RedisTLS) Files() tlsconf.Files {
	return tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName}
}

// Sentinel locates the Redis master of a Sentinel deployment.
type Sentinel struct {
	Master   string   `yaml:"master"`
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username,omitempty"`
	Password string   `yaml:"password,omitempty"`
}

// NATS connection.
type NATS struct {
	URL      string `yaml:"url"`                // one server, or a comma-separated list (a cluster)
	Replicas int    `yaml:"replicas,omitempty"` // replicas of campaignd's streams and of the audiences bucket (default 1)
	// One of: a credentials file (user JWT and NKey seed), an NKey seed
	// file, a user and password, a token.
	Creds    string   `yaml:"creds,omitempty"`
	NKey     string   `yaml:"nkey,omitempty"`
	User     string   `yaml:"user,omitempty"`
	Password string   `yaml:"password,omitempty"`
	Token    string   `yaml:"token,omitempty"`
	TLS      *NATSTLS `yaml:"tls,omitempty"` // TLS to the servers with a private CA, a client certificate
}

// NATSTLS is nats.tls: the CA to trust instead of the system's, a client
// certificate and its key (both or neither). InsecureSkipVerify accepts
// any server certificate: only when set explicitly, and warned about at
// start.
type NATSTLS struct {
	CA                 string `yaml:"ca,omitempty"`
	Cert               string `yaml:"cert,omitempty"`
	Key                string `yaml:"key,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

// Auth is the NATS credentials and TLS as connect settings.
func (n NATS) Auth() natsconn.Auth {
	a := natsconn.Auth{Creds: n.Creds, NKey: n.NKey, User: n.User, Password: n.Password, Token: n.Token}
	if t := n.TLS; t != nil {
		a.TLS = natsconn.TLS{Enabled: true, Files: tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key, InsecureSkipVerify: t.InsecureSkipVerify}}
	}
	return a
}

// HTTP server.
type HTTP struct {
	Addr      string    `yaml:"addr"`
	BasicAuth BasicAuth `yaml:"basic_auth"`
	// UIAllowChanges lets the asynq UI change queues and tasks (delete,
	// archive, run, pause). Off by default: the UI is read-only, so that
	// nobody loses queued campaigns by accident.
	UIAllowChanges bool `yaml:"ui_allow_changes"`
}

// BasicAuth guards everything but /healthz and /readyz when User is set.
type BasicAuth struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Worker settings.
type Worker struct {
	Concurrency int      `yaml:"concurrency"`
	StallAfter  Duration `yaml:"stall_after"` // a campaign with no progress this long has its missing tasks queued again (unset: the worker's default, 1m)
	PlanMemory  Size     `yaml:"plan_memory"` // memory the plans of one process may hold at once to drop repeated ids (unset: the worker's default, 64MiB)
	// PlanSpillDir is where a plan of several passes keeps the later
	// parts' ids so the audience is read once ("" : the system's temp
	// directory; "off": read it again each pass).
	PlanSpillDir string `yaml:"plan_spill_dir"`
}

// PlanSpillOff is the worker.plan_spill_dir that turns spilling off.
const PlanSpillOff = "off"

// Size is a number of bytes, written "64MiB", "512k", "1g" or plain bytes.
type Size int64

// App is one provider app; its map key is the campaign's "app".
type App struct {
	Provider     string     `yaml:"provider"`
	BaseURL      string     `yaml:"base_url"`
	Org          string     `yaml:"org"`
	App          string     `yaml:"app"`
	ClientID     string     `yaml:"client_id"`
	ClientSecret string     `yaml:"client_secret"`
	AppToken     string     `yaml:"app_token"`
	AppKey       string     `yaml:"app_key"`
	AppSecret    string     `yaml:"app_secret"`
	Timezone     string     `yaml:"timezone"`
	Limits       Limits     `yaml:"limits"`
	TaskWindow   TaskWindow `yaml:"task_window"`
	// Adaptive: the provider's refusals for rate lower the app's limits to
	// the share left by other clients of its key, for every process, and
	// they climb back while none come (docs/ratelimit.md). Unset: true;
	// false for a key known to be campaignd's alone.
	Adaptive *bool `yaml:"adaptive"`

	// Location is Timezone loaded by Validate; not read from YAML.
	Location *time.Location `yaml:"-"`
}

// Adapts reports whether the app's limits adapt to the provider's refusals
// (Adaptive, true when unset).
func (a App) Adapts() bool { return a.Adaptive == nil || *a.Adaptive }

// Limits are calls per second per endpoint group (provider.Groups names
// the keys), summed over all processes. A group left out (or 0) takes its
// default from provider.DefaultLimits.
type Limits map[provider.Group]float64

// TaskWindow are the provider's task caps for label pushes and broadcasts.
type TaskWindow struct {
	MaxCreated   int      `yaml:"max_created"`
	Window       Duration `yaml:"window"`
	MaxRunning   int      `yaml:"max_running"`
	TaskDuration Duration `yaml:"task_duration"`
}

// Duration is a time.Duration written in YAML as "5m", "10s".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Schedule is a recurring campaign.
type Schedule struct {
	Name     string             `yaml:"name"`
	Cron     string             `yaml:"cron"`
	Timezone string             `yaml:"timezone"`
	Campaign campaigns.Campaign `yaml:"-"`
	// CampaignRaw is the campaign as written in YAML; Load turns it into
	// Campaign (through JSON, so the field names are the contract's).
	CampaignRaw map[string]any `yaml:"campaign"`
}

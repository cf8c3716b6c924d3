package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
)

const base = `
apps:
  default:
    provider: easemob
    base_url: http://127.0.0.1:9900
    org: o
    app: a
    client_id: id
    client_secret: ${SECRET}
`

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func load(t *testing.T, yml string, vars map[string]string) (*Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(p, env(vars))
}

func TestSampleConfigsLoad(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"CAMPAIGND_UI_PASSWORD": "pw", "EASEMOB_CLIENT_SECRET": "s", "ENGAGELAB_APP_SECRET": "s2",
		"PUSHSIM_URL": "http://127.0.0.1:9900", "CAMPAIGND_REDIS_URL": "redis://127.0.0.1:1/0",
		"CAMPAIGND_NATS_URL": "nats://127.0.0.1:2", "CAMPAIGND_HTTP_ADDR": "127.0.0.1:3"}
	for _, f := range []string{"campaignd.yaml", "demo.yaml", "docker.yaml"} {
		cfg, err := Load(filepath.Join("..", "configs", f), env(vars))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.Apps["default"].Location == nil {
			t.Errorf("%s: zone not loaded", f)
		}
	}
}

func TestDefaultsExpansionAndOverrides(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, base, map[string]string{"SECRET": "shh", "CAMPAIGND_HTTP_ADDR": "127.0.0.1:9999"})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Apps["default"]
	if a.ClientSecret != "shh" || cfg.HTTP.Addr != "127.0.0.1:9999" || cfg.Worker.Concurrency != 50 || cfg.Redis.URL == "" {
		t.Fatalf("%+v", cfg)
	}
	if a.Limit(provider.GroupPushSingle) != 10 || a.Limit(provider.GroupPushSync) != 1 || a.Limit(provider.GroupToken) != 2 {
		t.Errorf("default limits: %+v", a.Limits)
	}
	if a.TaskWindow.MaxCreated != 3 || a.TaskWindow.Window.D() != 5*time.Minute {
		t.Errorf("task window defaults: %+v", a.TaskWindow)
	}
	if cfg.Worker.PlanMemory != 0 || cfg.Worker.StallAfter != 0 {
		t.Errorf("worker.plan_memory %d and stall_after %s: unset, they are the worker's defaults (one home)", cfg.Worker.PlanMemory, cfg.Worker.StallAfter.D())
	}
	cfg, err = load(t, base+"worker: {plan_memory: 128MiB}\n", map[string]string{"SECRET": "shh"})
	if err != nil || cfg.Worker.PlanMemory != 128<<20 {
		t.Fatalf("plan_memory 128MiB: %v %v", cfg.Worker.PlanMemory, err)
	}
	for _, dir := range []string{t.TempDir(), PlanSpillOff} {
		cfg, err = load(t, base+"worker: {plan_spill_dir: \""+dir+"\"}\n", map[string]string{"SECRET": "shh"})
		if err != nil || cfg.Worker.PlanSpillDir != dir {
			t.Fatalf("plan_spill_dir %q: %q %v", dir, cfg.Worker.PlanSpillDir, err)
		}
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yml, key string
	}{
		{"unknown provider", strings.Replace(base, "easemob", "foo", 1), "apps.default.provider"},
		{"missing secret", base, "apps.default.client_id"},
		{"bad zone", base + "    timezone: Mars/Base\n", "apps.default.timezone"},
		{"negative limit", base + "    limits: {push_single: -1}\n", "apps.default.limits.push_single"},
		{"unknown limit group", base + "    limits: {push_singel: 5}\n", "push_singel"},
		{"negative task window", base + "    task_window: {max_running: -1}\n", "apps.default.task_window.max_running"},
		{"schedule campaign with an id", base + "schedules:\n  - {name: w, cron: \"@daily\", campaign: {id: x, kind: broadcast, push_message: {t: 1}}}\n", "schedules[0].campaign.id"},
		{"bad base_url", strings.Replace(base, "http://127.0.0.1:9900", "ftp://x", 1), "apps.default.base_url"},
		{"unknown key", base + "    limitz: {}\n", "limitz"},
		{"bad duration", base + "    task_window: {window: soon}\n", "duration"},
		{"bad cron", base + "schedules:\n  - {name: w, cron: \"61 * * * *\", campaign: {kind: broadcast, push_message: {t: 1}}}\n", "schedules[0].cron"},
		{"@every schedule", base + "schedules:\n  - {name: w, cron: \"@every 5m\", campaign: {kind: broadcast, push_message: {t: 1}}}\n", "schedules[0].cron"},
		{"bad schedule name", base + "schedules:\n  - {name: \"a b\", cron: \"@daily\", campaign: {kind: broadcast, push_message: {t: 1}}}\n", "schedules[0].name"},
		{"bad schedule zone", base + "schedules:\n  - {name: w, cron: \"@daily\", timezone: X/Y, campaign: {kind: broadcast, push_message: {t: 1}}}\n", "schedules[0].timezone"},
		{"bad schedule campaign", base + "schedules:\n  - {name: w, cron: \"@daily\", campaign: {kind: label_push, push_message: {t: 1}}}\n", "schedules[0].campaign.label"},
		{"concurrency", base + "worker: {concurrency: -1}\n", "worker.concurrency"},
		{"plan memory too small", base + "worker: {plan_memory: 100k}\n", "worker.plan_memory"},
		{"bad size", base + "worker: {plan_memory: lots}\n", "size"},
		{"missing spill dir", base + "worker: {plan_spill_dir: /nonexistent/spill}\n", "worker.plan_spill_dir"},
		{"redis url", base + "redis: {url: \"localhost:6379\"}\n", "redis.url"},
		{"url and sentinel", base + "redis: {url: \"redis://h:6379/0\", sentinel: {master: m, addrs: [\"s:26379\"]}}\n", "redis.url"},
		{"sentinel without master", base + "redis: {sentinel: {addrs: [\"s:26379\"]}}\n", "redis.sentinel.master"},
		{"sentinel without addrs", base + "redis: {sentinel: {master: m}}\n", "redis.sentinel.addrs"},
		{"bad sentinel addr", base + "redis: {sentinel: {master: m, addrs: [\"nohostport\"]}}\n", "redis.sentinel.addrs[0]"},
		{"password beside url", base + "redis: {url: \"redis://h:6379/0\", password: x}\n", "redis.password"},
		{"tls on a plain url", base + "redis: {url: \"redis://h:6379/0\", tls: true}\n", "redis.tls"},
		{"tls cert without key", base + "redis: {url: \"rediss://h:6379/0\", tls: {cert: /etc/hostname}}\n", "redis.tls.key"},
		{"tls missing ca", base + "redis: {url: \"rediss://h:6379/0\", tls: {ca: /nonexistent/ca.pem}}\n", "redis.tls.ca"},
		{"tls unknown key", base + "redis: {url: \"rediss://h:6379/0\", tls: {cafile: x}}\n", "cafile"},
		{"tls not a bool", base + "redis: {url: \"rediss://h:6379/0\", tls: maybe}\n", "redis.tls"},
		{"two nats credentials", base + "nats: {url: \"nats://a:4222\", user: u, password: p, token: t}\n", "nats.creds"},
		{"nats password without user", base + "nats: {url: \"nats://a:4222\", password: p}\n", "nats.user"},
		{"missing nkey seed", base + "nats: {url: \"nats://a:4222\", nkey: /nonexistent/seed.nk}\n", "nats.nkey"},
		{"missing creds file", base + "nats: {url: \"nats://a:4222\", creds: /nonexistent/x.creds}\n", "nats.creds"},
		{"missing nats ca", base + "nats: {url: \"nats://a:4222\", tls: {ca: /nonexistent/ca.pem}}\n", "nats.tls.ca"},
		{"nats key without cert", base + "nats: {url: \"nats://a:4222\", tls: {key: /etc/hostname}}\n", "nats.tls.cert"},
		{"bad nats in a list", base + "nats: {url: \"nats://a:4222,b:4222\"}\n", "nats.url (server 2)"},
		{"replicas", base + "nats: {url: \"nats://a:4222\", replicas: 7}\n", "nats.replicas"},
		{"http addr", base + "http: {addr: nonsense}\n", "http.addr"},
		{"auth without password", base + "http: {addr: \"127.0.0.1:1\", basic_auth: {user: admin, password: \"${NOPE}\"}}\n", "http.basic_auth.password"},
		{"engagelab without secret", "apps:\n  x: {provider: engagelab, base_url: \"http://h\", app_key: k}\n", "apps.x.app_secret"},
		{"no apps", "worker: {concurrency: 5}\n", "apps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{}
			if tt.name != "missing secret" {
				vars["SECRET"] = "s"
			}
			_, err := load(t, tt.yml, vars)
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("error %v does not name %q", err, tt.key)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// redis.tls is true (the system's roots) or the files of a private CA and
// a client certificate, in the URL and the Sentinel forms alike, and it
// reads back as it was written.
func TestRedisTLSForms(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, "config-test").File
	cfg, err := load(t, base+"redis: {url: \"rediss://h:6380/0\", tls: {ca: "+ca+", server_name: redis.internal}}\n", map[string]string{"SECRET": "s"})
	if err != nil {
		t.Fatal(err)
	}
	if tl := cfg.Redis.TLS; !tl.Enabled || tl.CA != ca || tl.ServerName != "redis.internal" {
		t.Fatalf("%+v", tl)
	}
	fields, _ := cfg.Sanitized().Fields()
	if flat := fmt.Sprint(fields); !strings.Contains(flat, "redis.tls.ca "+ca) || !strings.Contains(flat, "redis.tls.server_name redis.internal") {
		t.Fatalf("fields: %s", flat)
	}
	cfg, err = load(t, base+"redis: {sentinel: {master: m, addrs: [\"s:26379\"]}, tls: true}\n", map[string]string{"SECRET": "s"})
	if err != nil || !cfg.Redis.TLS.Enabled || cfg.Redis.TLS.CA != "" {
		t.Fatalf("tls: true: %+v %v", cfg.Redis.TLS, err)
	}
	out, err := yaml.Marshal(cfg.Redis)
	if err != nil || !strings.Contains(string(out), "tls: true") {
		t.Fatalf("tls: true reads back as %s (%v)", out, err)
	}
}

// NATS credentials come through ${VAR} and never show in the sanitized
// copy.
func TestNATSSecretsAreMasked(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, base+"nats: {url: \"nats://a:4222\", user: campaignd, password: \"${NATS_PASSWORD}\"}\n", map[string]string{"SECRET": "s", "NATS_PASSWORD": "pw-from-env"})
	if err != nil || cfg.NATS.Password != "pw-from-env" {
		t.Fatalf("%+v %v", cfg.NATS, err)
	}
	fields, _ := cfg.Sanitized().Fields()
	if flat := fmt.Sprint(fields); strings.Contains(flat, "pw-from-env") || !strings.Contains(flat, "nats.user campaignd") {
		t.Fatalf("sanitized: %s", flat)
	}
	cfg, err = load(t, base+"nats: {url: \"nats://a:4222\", token: \"${NATS_TOKEN}\"}\n", map[string]string{"SECRET": "s", "NATS_TOKEN": "tok-from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if fields, _ := cfg.Sanitized().Fields(); strings.Contains(fmt.Sprint(fields), "tok-from-env") {
		t.Fatalf("sanitized: %v", fields)
	}
}

// The Sentinel form needs no url (the default is dropped), and a NATS
// cluster is a comma-separated list.
func TestSentinelAndNATSClusterForms(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, base+`redis: {sentinel: {master: campaignd, addrs: ["127.0.0.1:26379", "127.0.0.1:26380"], password: sentpw}, password: redispw, db: 2}
nats: {url: "nats://a:4222, nats://b:4222,nats://c:4222", replicas: 3}
`, map[string]string{"SECRET": "s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.URL != "" || cfg.Redis.Sentinel == nil || cfg.Redis.Sentinel.Master != "campaignd" || cfg.Redis.DB != 2 || cfg.NATS.Replicas != 3 {
		t.Fatalf("%+v %+v", cfg.Redis, cfg.NATS)
	}
	fields, _ := cfg.Sanitized().Fields()
	if flat := fmt.Sprint(fields); strings.Contains(flat, "sentpw") || strings.Contains(flat, "redispw") || !strings.Contains(flat, "redis.sentinel.master campaignd") {
		t.Fatalf("sanitized: %s", flat)
	}
}

func TestSanitizedHidesSecrets(t *testing.T) {
	t.Parallel()
	yml := `
redis: {url: "redis://:redispw@127.0.0.1:6379/0"}
nats: {url: "nats://u:natspw@127.0.0.1:4222"}
http: {addr: "127.0.0.1:1", basic_auth: {user: admin, password: uipw}}
apps:
  default: {provider: easemob, base_url: "http://h", org: o, app: a, client_id: id, client_secret: clientpw, app_token: tokenpw}
  el: {provider: engagelab, base_url: "http://h", app_key: k, app_secret: elpw}
`
	cfg, err := load(t, yml, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sanitized()
	js, _ := json.Marshal(s)
	ym, _ := yaml.Marshal(s)
	fields, err := s.Fields()
	if err != nil {
		t.Fatal(err)
	}
	flat := fmt.Sprint(fields)
	for _, want := range []string{"[apps.default.limits.push_single 10]", "[redis.url redis://:***@127.0.0.1:6379/0]", "[apps.el.app_secret ***]"} {
		if !strings.Contains(flat, want) {
			t.Errorf("Fields lacks %s: %s", want, flat)
		}
	}
	for _, out := range []string{fmt.Sprintf("%+v", s), string(js), string(ym), flat} {
		for _, secret := range []string{"redispw", "natspw", "uipw", "clientpw", "tokenpw", "elpw"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s leaked in %s", secret, out)
			}
		}
	}
	if cfg.Apps["default"].ClientSecret != "clientpw" {
		t.Error("Sanitized changed the original")
	}
}

// worker.concurrency left out (or 0) follows the apps configured: 50, or
// 3 per app when that is more; a value given is kept.
func TestConcurrencyFollowsTheApps(t *testing.T) {
	t.Parallel()
	app := func(i int) string {
		return fmt.Sprintf("  a%d: {provider: easemob, base_url: \"http://127.0.0.1:1\", org: o, app: a%d, client_id: c, client_secret: s}\n", i, i)
	}
	for _, tc := range []struct {
		apps   int
		worker string
		want   int
	}{
		{1, "", 50},
		{16, "", 50},
		{17, "", 51},
		{100, "worker: {concurrency: 0}\n", 300},
		{100, "worker: {concurrency: 20}\n", 20},
	} {
		yaml := tc.worker + "apps:\n"
		for i := range tc.apps {
			yaml += app(i)
		}
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Worker.Concurrency != tc.want {
			t.Errorf("%d apps, %q: concurrency %d, want %d", tc.apps, tc.worker, cfg.Worker.Concurrency, tc.want)
		}
	}
}

// WithDefaults returns a copy and Validate changes nothing: the config
// given keeps its empty keys and shares no map with the copy.
func TestDefaultsAreACopyAndValidationChangesNothing(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.Apps = map[string]App{"default": {Provider: provider.Easemob, BaseURL: "http://127.0.0.1:9900", Org: "o", App: "a",
		ClientID: "id", ClientSecret: "s", Limits: Limits{provider.GroupPushSingle: 5}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := cfg.Apps["default"]
	if a.Location != nil || a.Timezone != "" || len(a.Limits) != 1 || a.TaskWindow.MaxCreated != 0 || cfg.Worker.Concurrency != 0 {
		t.Fatalf("Validate changed the config: %+v, concurrency %d", a, cfg.Worker.Concurrency)
	}
	d := cfg.WithDefaults()
	da := d.Apps["default"]
	if da.Location == nil || da.Timezone != "UTC" || da.Limit(provider.GroupPushSingle) != 5 || da.Limits[provider.GroupPushSync] != 1 ||
		da.TaskWindow.MaxCreated != DefaultMaxCreated || d.Worker.Concurrency != DefaultConcurrency(1) {
		t.Fatalf("defaults not filled in: %+v, concurrency %d", da, d.Worker.Concurrency)
	}
	if len(cfg.Apps["default"].Limits) != 1 {
		t.Fatalf("WithDefaults wrote into the original's limits: %v", cfg.Apps["default"].Limits)
	}
}

// ${VAR} goes into a value after the YAML is read: a secret with YAML's
// own characters is taken as it is, quoted or not, and an error never
// shows a variable's value.
func TestSecretsWithYAMLCharacters(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{`*anchor-like`, `&amp`, `!tag`, `p#ss word`, `a: b`, `"quoted`, `it's`, `{x}`, `[1, 2]`, `% @ |`, "two\nlines", "123456", "true", `- dash`} {
		for _, form := range []string{`${PW}`, `"${PW}"`, `'${PW}'`} {
			cfg, err := load(t, base+"nats: {url: \"nats://a:4222\", user: u, password: "+form+"}\n", map[string]string{"SECRET": "s", "PW": secret})
			if err != nil || cfg.NATS.Password != secret {
				t.Errorf("password %s = %q: got %+v, %v", form, secret, cfg, err)
			}
		}
	}
	// A plain ${VAR} is typed from its value; a quoted one stays text.
	cfg, err := load(t, base+"nats: {url: \"nats://a:4222\", replicas: ${N}}\n", map[string]string{"SECRET": "s", "N": "3"})
	if err != nil || cfg.NATS.Replicas != 3 {
		t.Fatalf("replicas: ${N}: %+v %v", cfg.NATS, err)
	}
	// A value in the wrong place: the error names the variable, not its value.
	_, err = load(t, base+"nats: {url: \"nats://a:4222\", replicas: ${PW}}\n", map[string]string{"SECRET": "s", "PW": "hunter2-secret"})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "${PW}") {
		t.Fatalf("want an error naming ${PW} without its value: %v", err)
	}
	// Unknown keys are still named, with the file's line.
	_, err = load(t, base+"nats:\n  url: nats://a:4222\n  pasword: ${PW}\n", map[string]string{"SECRET": "s", "PW": "x"})
	if err == nil || !strings.Contains(err.Error(), "line 12: field pasword not found") {
		t.Fatalf("want the unknown key named on its line: %v", err)
	}
	// A ${VAR} in a comment is nobody's business.
	if _, err := load(t, base+"# password: ${NOT_SET}\n", map[string]string{"SECRET": "s"}); err != nil {
		t.Fatal(err)
	}
}

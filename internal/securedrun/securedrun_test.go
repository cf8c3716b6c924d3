// Package securedrun runs campaignd as a careful operator would, with
// every connection secured (issue 25): Debian's nats-server with TLS from
// a private CA, client certificates and configs/nats/campaignd-account.conf;
// Redis behind a Sentinel, both over mutual TLS with passwords; campaignd
// and campaignctl built from ./cmd, each secret given through the
// environment. A campaign goes end to end, and no secret appears in any
// log, answer, page or metric of the run.
package securedrun

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/testenv"
)

// secrets of the run, each given to the programs through the environment.
type secrets map[string]string

func (s secrets) env() []string {
	var env []string
	for k, v := range s {
		env = append(env, k+"="+v)
	}
	return env
}

func TestSecuredEndToEnd(t *testing.T) {
	bin := testenv.Build(t, "./cmd/campaignd", "./cmd/campaignctl", "./cmd/pushsim")
	sec := secrets{
		"REDIS_PASSWORD":          "redis-" + rand.Text(),
		"SENTINEL_PASSWORD":       "sentinel-" + rand.Text(),
		"CAMPAIGND_NATS_PASSWORD": "natsd-" + rand.Text(),
		"BACKEND_NATS_PASSWORD":   "natsb-" + rand.Text(),
		"APP_SECRET":              "app-" + rand.Text(),
		"UI_PASSWORD":             "ui-" + rand.Text(),
	}
	ca := testenv.NewCA(t, "secured")
	dir := t.TempDir()

	// Redis over mutual TLS with a password, found through a Sentinel
	// that also speaks TLS only and asks for its own password.
	redisCert, redisKey := ca.Issue(t, "redis", testenv.CertOptions{Hosts: []string{"127.0.0.1"}})
	clientCert, clientKey := ca.Issue(t, "campaignd-client", testenv.CertOptions{Client: true})
	master := testenv.StartRedisWith(t, testenv.RedisOptions{Password: sec["REDIS_PASSWORD"],
		TLS: &testenv.RedisTLS{Cert: redisCert, Key: redisKey, CA: ca.File, AuthClients: true, Client: clientCert, ClientKey: clientKey}})
	sentinel := startSentinel(t, dir, master.Addr, sec, ca.File, redisCert, redisKey, clientCert, clientKey)

	// NATS: Debian's nats-server with the least-privilege account, TLS
	// with client certificates; the passwords from its environment.
	natsCert, natsKey := ca.Issue(t, "nats", testenv.CertOptions{Hosts: []string{"127.0.0.1"}})
	natsURL := startNATS(t, dir, sec, ca.File, natsCert, natsKey, clientCert, clientKey)

	simURL, _ := testenv.StartSimProc(t, bin+"/pushsim", "-easemob-client-secret", sec["APP_SECRET"], "-limit", "push_single=50")

	// The configuration is docs/OPERATIONS.md's, with the test's hosts
	// and files, and the provider emulator as the app.
	for name, from := range map[string]string{"ca.pem": ca.File, "client.pem": clientCert, "client-key.pem": clientKey} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := strings.NewReplacer("/etc/campaignd/", dir+"/", "sentinel-1.internal:26379", sentinel,
		"tls://nats-1.internal:4222", natsURL).Replace(operationsExample(t))
	yaml += fmt.Sprintf("apps:\n  default: {provider: easemob, base_url: %q, org: o, app: a, client_id: pushsim, client_secret: ${APP_SECRET}, limits: {push_single: 50}}\n", simURL)
	cfg := filepath.Join(dir, "campaignd.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	daemon := testenv.StartProc(t, bin+"/campaignd", []string{"-config", cfg, "-log-level", "debug", "-log-json"},
		append(sec.env(), "CAMPAIGND_HTTP_ADDR="+addr))
	root := "http://" + addr
	testenv.WaitReady(t, root+"/readyz", daemon)

	// The backend team: campaignctl as the publisher, over TLS with its
	// client certificate, an audience of 2,000 ids.
	var aud strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&aud, "user%04d\n", i)
	}
	audFile, campFile := filepath.Join(dir, "users.txt"), filepath.Join(dir, "c.json")
	if err := os.WriteFile(audFile, []byte(aud.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(campFile, []byte(`{"id":"secured-1","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, error) {
		cmd := exec.Command(bin+"/campaignctl", append([]string{"-nats", natsURL, "-api", root, "-user", "ops", "-timeout", "30s"}, args...)...)
		cmd.Env = append(os.Environ(), "CAMPAIGND_NATS_USER=backend", "CAMPAIGND_NATS_PASSWORD="+sec["BACKEND_NATS_PASSWORD"],
			"CAMPAIGND_NATS_CA="+ca.File, "CAMPAIGND_NATS_CERT="+clientCert, "CAMPAIGND_NATS_KEY="+clientKey,
			"CAMPAIGND_UI_PASSWORD="+sec["UI_PASSWORD"])
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var outputs []string
	for _, args := range [][]string{
		{"submit", "-f", campFile, "--audience", audFile, "--no-progress"},
		{"watch", "secured-1"},
		{"status", "secured-1"},
		{"list"},
	} {
		out, err := ctl(args...)
		if err != nil {
			t.Fatalf("campaignctl %s: %v\n%s\ncampaignd:\n%s", strings.Join(args, " "), err, out, daemon.Log())
		}
		outputs = append(outputs, out)
	}
	if !strings.Contains(outputs[1], `"status": "completed"`) || !strings.Contains(outputs[1], `"sent": 2000`) {
		t.Fatalf("watch:\n%s", outputs[1])
	}
	stats := testenv.SimStats(t, simURL)
	if stats.TotalPushes != 2000 || stats.Violations != 0 {
		t.Fatalf("pushsim: %d targets pushed (want 2000), %d violations", stats.TotalPushes, stats.Violations)
	}

	// What an operator or a scraper sees.
	for _, path := range []string{"/metrics", "/api/campaigns", "/api/campaigns/secured-1", "/campaigns/", "/monitoring/",
		"/monitoring/api/queues", "/monitoring/api/redis_info", "/healthz", "/readyz"} {
		outputs = append(outputs, get(t, root+path, sec["UI_PASSWORD"]))
	}

	log := daemon.Log()
	if !strings.Contains(log, `"level":"debug"`) || !strings.Contains(log, "secured-1") {
		t.Fatalf("the log has no debug lines or none about the campaign: nothing to check\n%s", log)
	}
	if strings.Contains(log, "NATS permissions do not allow") {
		t.Errorf("campaignd was refused a subject of the least-privilege account:\n%s", log)
	}
	keys := []string{}
	for _, f := range []string{clientKey, redisKey, natsKey} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, string(b))
	}
	for where, text := range map[string]string{"campaignd's log": log, "campaignctl's output and the HTTP answers": strings.Join(outputs, "\n")} {
		for name, s := range sec {
			if strings.Contains(text, s) {
				t.Errorf("%s shows %s", where, name)
			}
		}
		for _, k := range keys {
			if strings.Contains(text, strings.TrimSpace(k)) || strings.Contains(text, "PRIVATE KEY") {
				t.Errorf("%s shows a private key", where)
			}
		}
	}
}

// operationsExample is the YAML block of docs/OPERATIONS.md marked
// "tested: internal/securedrun".
func operationsExample(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- tested: internal/securedrun -->\n```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/OPERATIONS.md has no yaml block marked <!-- tested: internal/securedrun -->")
	}
	return block
}

// startSentinel starts one Sentinel (quorum 1) for master over TLS only,
// with its own password, and returns its address once it knows the
// master.
func startSentinel(t *testing.T, dir, master string, sec secrets, caFile, cert, key, clientCert, clientKey string) string {
	t.Helper()
	host, port, _ := strings.Cut(master, ":")
	sp := testenv.FreePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf(`port 0
tls-port %d
bind 127.0.0.1
tls-cert-file %s
tls-key-file %s
tls-client-cert-file %s
tls-client-key-file %s
tls-ca-cert-file %s
tls-auth-clients yes
tls-replication yes
requirepass %s
sentinel monitor campaignd %s %s 1
sentinel auth-pass campaignd %s
`, sp, cert, key, clientCert, clientKey, caFile, sec["SENTINEL_PASSWORD"], host, port, sec["REDIS_PASSWORD"])
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProc(t, bin, []string{conf, "--sentinel"}, nil)
	addr := fmt.Sprintf("127.0.0.1:%d", sp)
	tc := clientTLS(t, caFile, clientCert, clientKey)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: sec["SENTINEL_PASSWORD"], TLSConfig: tc})
	t.Cleanup(func() { _ = sc.Close() })
	testenv.WaitFor(t, 20*time.Second, "the sentinel to answer over TLS with the master "+master, func() (string, bool) {
		if p.Exited() {
			t.Fatalf("the sentinel exited:\n%s", p.Log())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		got, err := sc.GetMasterAddrByName(ctx, "campaignd").Result()
		if err != nil {
			return err.Error(), false
		}
		return strings.Join(got, ":"), strings.Join(got, ":") == master
	})
	return addr
}

// startNATS starts Debian's nats-server with
// configs/nats/campaignd-account.conf and TLS that asks for a client
// certificate of the CA, and returns its URL once a publisher can
// connect.
func startNATS(t *testing.T, dir string, sec secrets, caFile, cert, key, clientCert, clientKey string) string {
	t.Helper()
	account, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "configs", "nats", "campaignd-account.conf"))
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "nats-server.conf")
	body := fmt.Sprintf("listen: 127.0.0.1:%d\njetstream { store_dir: %q }\ntls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: 2 }\n%s",
		port, filepath.Join(dir, "jetstream"), cert, key, caFile, account)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProc(t, testenv.NATSServerBinary(t), []string{"-c", conf},
		[]string{"CAMPAIGND_NATS_PASSWORD=" + sec["CAMPAIGND_NATS_PASSWORD"], "BACKEND_NATS_PASSWORD=" + sec["BACKEND_NATS_PASSWORD"]})
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	tc := clientTLS(t, caFile, clientCert, clientKey)
	testenv.WaitFor(t, 20*time.Second, "nats-server to take a publisher over TLS", func() (string, bool) {
		if p.Exited() {
			t.Fatalf("nats-server exited:\n%s", p.Log())
		}
		nc, err := nats.Connect(url, nats.Secure(tc), nats.UserInfo("backend", sec["BACKEND_NATS_PASSWORD"]), nats.Timeout(time.Second))
		if err != nil {
			return err.Error(), false
		}
		nc.Close()
		return "", true
	})
	return url
}

func clientTLS(t *testing.T, caFile, cert, key string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// get is an HTTP answer's body, through the UI's basic auth; it fails
// the test unless the status is 200.
func get(t *testing.T, url, password string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("ops", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, resp.StatusCode, body)
	}
	return string(body)
}

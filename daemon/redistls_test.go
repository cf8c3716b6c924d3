package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// Redis over TLS with a private CA (and mutual TLS): the go-redis clients
// and asynq's connection reach it with redis.tls's files, and a wrong CA,
// a missing client certificate or an expired server certificate fail,
// saying why.
func TestRedisTLSWithAPrivateCA(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, "campaignd-test")
	srvCert, srvKey := ca.Issue(t, "redis", testenv.CertOptions{Hosts: []string{"127.0.0.1"}})
	cliCert, cliKey := ca.Issue(t, "campaignd", testenv.CertOptions{Client: true})
	other := testenv.NewCA(t, "someone-else")
	expCert, expKey := ca.Issue(t, "redis-expired", testenv.CertOptions{Hosts: []string{"127.0.0.1"}, Expired: true})

	tlsOnly := testenv.StartRedisWith(t, testenv.RedisOptions{TLS: &testenv.RedisTLS{Cert: srvCert, Key: srvKey, CA: ca.File}})
	mutual := testenv.StartRedisWith(t, testenv.RedisOptions{TLS: &testenv.RedisTLS{Cert: srvCert, Key: srvKey, CA: ca.File,
		AuthClients: true, Client: cliCert, ClientKey: cliKey}})
	expired := testenv.StartRedisWith(t, testenv.RedisOptions{TLS: &testenv.RedisTLS{Cert: expCert, Key: expKey, CA: ca.File}})

	tests := []struct {
		name    string
		url     string
		tls     config.RedisTLS
		wantErr string // "" : it answers
	}{
		{"private CA", tlsOnly.URL, config.RedisTLS{Enabled: true, CA: ca.File}, ""},
		{"mutual TLS", mutual.URL, config.RedisTLS{Enabled: true, CA: ca.File, Cert: cliCert, Key: cliKey}, ""},
		{"server name given", tlsOnly.URL, config.RedisTLS{Enabled: true, CA: ca.File, ServerName: "127.0.0.1"}, ""},
		{"wrong CA", tlsOnly.URL, config.RedisTLS{Enabled: true, CA: other.File}, "certificate signed by unknown authority"},
		{"system roots", tlsOnly.URL, config.RedisTLS{Enabled: true}, "certificate signed by unknown authority"},
		{"no client certificate", mutual.URL, config.RedisTLS{Enabled: true, CA: ca.File}, "certificate"},
		{"hostname mismatch", tlsOnly.URL, config.RedisTLS{Enabled: true, CA: ca.File, ServerName: "redis.example"}, "redis.example"},
		{"expired server certificate", expired.URL, config.RedisTLS{Enabled: true, CA: ca.File}, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			setup := redisSetup{cfg: config.Redis{URL: tc.url, TLS: tc.tls}}
			c, err := setup.client(func(o *redis.UniversalOptions) { o.MaxRetries = -1 })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = c.Ping(ctx).Err()
			opt, aerr := setup.asynq(2)
			if aerr != nil {
				t.Fatal(aerr)
			}
			insp := asynq.NewInspector(opt)
			defer insp.Close()
			_, qerr := insp.Queues()
			if tc.wantErr == "" {
				if err != nil || qerr != nil {
					t.Fatalf("go-redis: %v; asynq: %v", err, qerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("go-redis: %v, want an error saying %q", err, tc.wantErr)
			}
			if qerr == nil {
				t.Fatal("asynq reached the server")
			}
		})
	}

	// campaignd stops at once on a certificate it cannot trust, saying why.
	w := newWorld(t, pushsim.Config{})
	cfg := w.config(t, config.Limits{provider.GroupPushSingle: 10})
	cfg.Redis.URL, cfg.Redis.TLS = tlsOnly.URL, config.RedisTLS{Enabled: true, CA: other.File}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	d, err := New(ctx, cfg, Options{Logger: zerolog.Nop()})
	if d != nil {
		d.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "unknown authority") || time.Since(begin) > 15*time.Second {
		t.Fatalf("start with a wrong CA: %v after %s", err, time.Since(begin))
	}
	cfg.Redis.TLS.CA = ca.File
	d, err = New(ctx, cfg, Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("start over TLS with the private CA: %v", err)
	}
	d.Close()
}

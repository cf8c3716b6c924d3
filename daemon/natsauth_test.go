package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// campaignd connects to a NATS that asks for credentials (a user and
// password, a token, an NKey) over TLS with a private CA, and stops at
// once, saying why in one line, when the credentials are refused or the
// server's certificate cannot be trusted: no retry mends those.
func TestNATSCredentialsAndTLS(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, "nats-test")
	srvCert, srvKey := ca.Issue(t, "nats", testenv.CertOptions{Hosts: []string{"127.0.0.1"}})
	expCert, expKey := ca.Issue(t, "nats-expired", testenv.CertOptions{Hosts: []string{"127.0.0.1"}, Expired: true})
	other := testenv.NewCA(t, "someone-else")
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "campaignd.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	serverTLS := func(cert, key string) func(*natsserver.Options) {
		return func(o *natsserver.Options) { o.TLSConfig, o.TLS = testenv.ServerTLS(t, cert, key), true }
	}
	users := testenv.StartNATSWith(t, func(o *natsserver.Options) {
		serverTLS(srvCert, srvKey)(o)
		o.Users = []*natsserver.User{{Username: "campaignd", Password: "s3cret-pw"}}
		o.Nkeys = []*natsserver.NkeyUser{{Nkey: pub}}
	})
	token := testenv.StartNATSWith(t, func(o *natsserver.Options) { o.Authorization = "s3cret-token" })
	expired := testenv.StartNATSWith(t, serverTLS(expCert, expKey))

	w := newWorld(t, pushsim.Config{})
	base := w.config(t, config.Limits{provider.GroupPushSingle: 10})
	withCA := &config.NATSTLS{CA: ca.File}
	tests := []struct {
		name    string
		url     string
		nats    config.NATS
		wantErr string // "": it starts
	}{
		{"user and password over TLS", users.URL, config.NATS{User: "campaignd", Password: "s3cret-pw", TLS: withCA}, ""},
		{"nkey over TLS", users.URL, config.NATS{NKey: seedFile, TLS: withCA}, ""},
		{"token", token.URL, config.NATS{Token: "s3cret-token"}, ""},
		{"wrong password", users.URL, config.NATS{User: "campaignd", Password: "wrong", TLS: withCA}, "NATS refused user campaignd"},
		{"wrong token", token.URL, config.NATS{Token: "wrong"}, "NATS refused a token"},
		{"wrong CA", users.URL, config.NATS{User: "campaignd", Password: "s3cret-pw", TLS: &config.NATSTLS{CA: other.File}}, "unknown authority"},
		{"expired certificate", expired.URL, config.NATS{TLS: withCA}, "expired"},
		{"skip verify, when asked", expired.URL, config.NATS{TLS: &config.NATSTLS{InsecureSkipVerify: true}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			n := tc.nats
			n.URL = tc.url
			cfg.NATS = n
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" {
				wantStartError(t, cfg, tc.wantErr, "s3cret", `wrong"`)
				return
			}
			var logs syncBuffer
			d, err := New(context.Background(), cfg, Options{Logger: zerolog.New(&logs)})
			if d != nil {
				d.Close()
			}
			if err != nil {
				t.Fatalf("start: %v\n%s", err, logs.String())
			}
		})
	}
}

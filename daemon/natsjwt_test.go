package daemon

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// accountPermissions are the permissions configs/nats/campaignd-account.conf
// gives its users, by user name, as nats-server reads them.
func accountPermissions(t *testing.T) map[string]*natsserver.Permissions {
	t.Helper()
	text, err := os.ReadFile(accountConf(t))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "account.conf")
	body := "CAMPAIGND_NATS_PASSWORD: " + rand.Text() + "\nBACKEND_NATS_PASSWORD: " + rand.Text() + "\n" + string(text)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := natsserver.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	perms := map[string]*natsserver.Permissions{}
	for _, u := range o.Users {
		perms[u.Username] = u.Permissions
	}
	return perms
}

// jwtOperator is an operator, one account with JetStream, and users of
// it, as `nsc` would make them (decentralized JWT auth).
type jwtOperator struct {
	claims     *jwt.OperatorClaims
	accountPub string
	accountJWT string
	account    nkeys.KeyPair
	systemPub  string // the system account JetStream needs
	systemJWT  string
}

func newJWTOperator(t *testing.T) *jwtOperator {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "test-operator"
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if oc, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		t.Fatal(err)
	}
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "CAMPAIGND"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtOperator{claims: oc, accountPub: accPub, accountJWT: accJWT, account: acc, systemPub: sysPub, systemJWT: sysJWT}
}

// serve makes a NATS server trust the operator and know its account.
func (o *jwtOperator) serve(t *testing.T) func(*natsserver.Options) {
	return func(opts *natsserver.Options) {
		res := &natsserver.MemAccResolver{}
		if err := res.Store(o.accountPub, o.accountJWT); err != nil {
			t.Fatal(err)
		}
		if err := res.Store(o.systemPub, o.systemJWT); err != nil {
			t.Fatal(err)
		}
		opts.TrustedOperators = []*jwt.OperatorClaims{o.claims}
		opts.SystemAccount = o.systemPub
		opts.AccountResolver = res
	}
}

// creds writes a credentials file for a new user of the account with
// perms, as `nsc generate creds` would.
func (o *jwtOperator) creds(t *testing.T, name string, perms *natsserver.Permissions) string {
	t.Helper()
	u, _ := nkeys.CreateUser()
	uPub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = name
	uc.Pub.Allow.Add(perms.Publish.Allow...)
	uc.Pub.Deny.Add(perms.Publish.Deny...)
	uc.Sub.Allow.Add(perms.Subscribe.Allow...)
	uc.Sub.Deny.Add(perms.Subscribe.Deny...)
	userJWT, err := uc.Encode(o.account)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// With decentralized JWT auth (an operator, an account, user JWTs with
// the permissions of configs/nats/campaignd-account.conf), campaignd runs
// from its .creds file and a publisher submits an audience campaign from
// its own; a user JWT of another operator is refused at start, naming
// the file.
func TestNATSCredsFileWithLeastPrivilege(t *testing.T) {
	t.Parallel()
	perms := accountPermissions(t)
	op := newJWTOperator(t)
	w := &world{redis: testenv.StartRedis(t), nats: testenv.StartNATSWith(t, op.serve(t))}
	w.natsURL = w.nats.URL
	w.backendOpts = []nats.Option{nats.UserCredentials(op.creds(t, "backend", perms["backend"]))}
	w.connect(t, pushsim.Config{})

	cfg := w.config(t, config.Limits{provider.GroupPushSingle: 50})
	cfg.NATS.Creds = op.creds(t, "campaignd", perms["campaignd"])
	r := start(t, cfg)
	if err := intake.UploadAudience(t.Context(), w.js, intake.AudienceBucket, "jwt.txt", strings.NewReader("j1\nj2\nj3\nj4\n")); err != nil {
		t.Fatal(err)
	}
	w.publish(t, "campaigns.submit", []byte(`{"id":"jwt-1","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"audiences","object":"jwt.txt"}}`), "jwt-1")
	if st := r.waitFinal(t, "jwt-1", 15*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 4 {
		t.Fatalf("%+v", st)
	}
	if st := w.lastStatus(t, "jwt-1"); st.Status != campaigns.StateCompleted {
		t.Fatalf("status read with the publisher's creds: %+v", st)
	}

	// A user of another operator's account.
	stranger := newJWTOperator(t).creds(t, "campaignd", perms["campaignd"])
	cfg.NATS.Creds = stranger
	wantStartError(t, cfg, "NATS refused credentials file "+stranger)
}

// wantStartError starts campaignd with cfg and wants it to stop at once
// with an error saying want, written in exactly one log line, and none of
// hidden in the log (secrets), nor a seed or a JWT.
func wantStartError(t *testing.T, cfg config.Config, want string, hidden ...string) {
	t.Helper()
	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	d, err := New(ctx, cfg, Options{Logger: zerolog.New(&logs)})
	if d != nil {
		d.Close()
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("start: %v, want an error saying %q\n%s", err, want, logs.String())
	}
	if took := time.Since(begin); took > 15*time.Second {
		t.Errorf("gave up after %s: a permanent refusal stops at once", took)
	}
	out, n := logs.String(), 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, want) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("want one line saying %q, got %d:\n%s", want, n, out)
	}
	for _, h := range append(hidden, "SUA", "eyJ") {
		if strings.Contains(out, h) {
			t.Errorf("the log shows %q:\n%s", h, out)
		}
	}
}

package main

import (
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
)

// campaignctl takes the same NATS credentials and TLS as campaignd, as
// flags or CAMPAIGND_NATS_* variables, and says who was refused, or why
// the certificate is not trusted, without the secret.
func TestNATSCredentialsFlags(t *testing.T) {
	ca := testenv.NewCA(t, "ctl-test")
	cert, key := ca.Issue(t, "nats", testenv.CertOptions{Hosts: []string{"127.0.0.1"}})
	other := testenv.NewCA(t, "someone-else")
	n := testenv.StartNATSWith(t, func(o *natsserver.Options) {
		o.TLSConfig, o.TLS = testenv.ServerTLS(t, cert, key), true
		o.Users = []*natsserver.User{{Username: "ops", Password: "ctl-s3cret"}}
	})
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in stderr
	}{
		{"right password", nil, []string{"-nats-user", "ops", "-nats-password", "ctl-s3cret", "-nats-ca", ca.File}, "stream"},
		{"from the environment", map[string]string{"CAMPAIGND_NATS_USER": "ops", "CAMPAIGND_NATS_PASSWORD": "ctl-s3cret", "CAMPAIGND_NATS_CA": ca.File}, nil, "stream"},
		{"wrong password", nil, []string{"-nats-user", "ops", "-nats-password", "nope", "-nats-ca", ca.File}, "NATS refused user ops"},
		{"wrong CA", nil, []string{"-nats-user", "ops", "-nats-password", "ctl-s3cret", "-nats-ca", other.File}, "unknown authority"},
		{"two credentials", nil, []string{"-nats-user", "ops", "-nats-token", "x"}, "-nats-creds: give one of"},
		{"password without user", nil, []string{"-nats-password", "x"}, "-nats-user: is required with password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"-nats", n.URL, "-timeout", "5s"}, tc.args...)
			code, _, errOut := runCLI(t, append(args, "watch", "some-id")...)
			if code != exitOther || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q: want %q", code, errOut, tc.want)
			}
			if strings.Contains(errOut, "refused") != strings.Contains(tc.want, "refused") {
				t.Fatalf("stderr %q", errOut)
			}
			if strings.Contains(errOut, "ctl-s3cret") {
				t.Fatalf("the password in stderr: %q", errOut)
			}
		})
	}
}

// On a NATS with configs/nats/campaignd-account.conf, campaignctl as the
// backend's publisher submits with an audience, reads status, watches and
// sends commands; as campaignd's own user, which may not submit, it
// stops at once naming the refused subject.
func TestLeastPrivilegePublisher(t *testing.T) {
	pw := map[string]string{"campaignd": rand.Text(), "backend": rand.Text()}
	n := testenv.StartNATSConf(t, filepath.Join(testenv.ModuleRoot(t), "configs", "nats", "campaignd-account.conf"),
		map[string]string{"CAMPAIGND_NATS_PASSWORD": pw["campaignd"], "BACKEND_NATS_PASSWORD": pw["backend"]}, nil)
	api, _ := startCampaignd(t, func(cfg *config.Config) {
		cfg.NATS.URL, cfg.NATS.User, cfg.NATS.Password = n.URL, "campaignd", pw["campaignd"]
	})
	as := func(user string, args ...string) (int, string, string) {
		return runCLI(t, append([]string{"-nats", n.URL, "-api", api, "-timeout", "20s", "-nats-user", user, "-nats-password", pw[user]}, args...)...)
	}
	a := writeFile(t, "users.txt", "u1\nu2\nu3\nu2\n")
	f := writeFile(t, "c.json", `{"id":"lp-ctl","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"}}`)
	if code, out, errOut := as("backend", "submit", "-f", f, "--audience", a); code != 0 || !strings.Contains(out, `"status": "accepted"`) {
		t.Fatalf("submit as backend: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := as("backend", "watch", "lp-ctl"); code != 0 || !strings.Contains(out, `"status": "completed"`) || !strings.Contains(out, `"sent": 3`) {
		t.Fatalf("watch as backend: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := as("backend", "status", "lp-ctl"); code != 0 || !strings.Contains(out, `"status": "completed"`) {
		t.Fatalf("status as backend: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := as("backend", "cancel", "lp-ctl"); code == exitOther || !strings.Contains(out, `"id": "lp-ctl"`) {
		t.Fatalf("cancel as backend (answered, whatever the answer): exit %d\n%s%s", code, out, errOut)
	}

	begin := time.Now()
	code, _, errOut := as("campaignd", "submit", "-f", writeFile(t, "c2.json", `{"id":"lp-ctl-2","app":"default","kind":"batch_push","targets":["u1"],"push_message":{"title":"t"}}`))
	if code != exitOther || !strings.Contains(errOut, "NATS permissions do not allow") || !strings.Contains(errOut, "as user campaignd") {
		t.Fatalf("submit as campaignd: exit %d, stderr %q", code, errOut)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("refused after %s: a refusal fails the command at once", took)
	}
	if strings.Contains(errOut, pw["campaignd"]) {
		t.Fatalf("the password in stderr: %q", errOut)
	}
}

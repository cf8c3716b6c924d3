package main

import (
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

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

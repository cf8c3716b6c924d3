package testenv

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// StartNATSConf starts an embedded nats-server configured by the
// nats-server configuration file conf (accounts, users, permissions: e.g.
// configs/nats/campaignd-account.conf), as an operator would run it, with
// vars defined ahead of it (the variables it reads from the environment,
// such as passwords: a test cannot set the environment of a parallel
// test). The listener, JetStream's store and logging are StartNATS's;
// set, when not nil, changes the options after that.
func StartNATSConf(tb testing.TB, conf string, vars map[string]string, set func(*natsserver.Options)) *NATS {
	tb.Helper()
	text, err := os.ReadFile(conf)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		fmt.Fprintf(&b, "%s: %q\n", k, vars[k])
	}
	b.Write(text)
	path := filepath.Join(tb.TempDir(), "nats-server.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return startNATS(tb, path, set)
}

// fromConf reads n.conf and lays n.opts's listener, store and logging
// over it.
func (n *NATS) fromConf() (*natsserver.Options, error) {
	o, err := natsserver.ProcessConfigFile(n.conf)
	if err != nil {
		return nil, err
	}
	o.Host, o.Port, o.JetStream, o.StoreDir = n.opts.Host, n.opts.Port, n.opts.JetStream, n.opts.StoreDir
	o.NoSigs, o.NoLog = n.opts.NoSigs, n.opts.NoLog
	if n.opts.TLSConfig != nil {
		o.TLSConfig, o.TLS, o.TLSVerify = n.opts.TLSConfig, n.opts.TLS, n.opts.TLSVerify
	}
	return o, nil
}

// Package testenv starts the real services tests need — redis-server and an
// embedded NATS server with JetStream — on free loopback ports, and stops
// them when the test ends. It never skips: a missing redis-server fails the
// test with a message telling how to install it.
package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Redis is a redis-server process started for one test.
type Redis struct {
	Addr   string // host:port
	URL    string // redis://host:port/0
	cmd    *exec.Cmd
	dir    string
	bin    string
	port   int
	opts   RedisOptions
	exited chan struct{} // closed when the process has been waited for
}

// RedisOptions tune StartRedisWith.
type RedisOptions struct {
	// AppendFsync turns the append-only file on with this fsync policy
	// ("always", "everysec"); empty: no persistence.
	AppendFsync string
	// Args are more redis-server arguments (e.g. --cluster-enabled yes).
	Args []string
	// TLS, when set, serves TLS only (no plain port) with these files.
	TLS *RedisTLS
	// Password, when set, is asked of every client (requirepass).
	Password string
}

// RedisTLS is a TLS redis-server's side: its certificate and key, the CA
// its clients' certificates must come from, and whether it asks for one
// (mutual TLS). Client and ClientKey are a client certificate of that CA
// for the readiness check when AuthClients is set.
type RedisTLS struct {
	Cert, Key, CA     string
	AuthClients       bool
	Client, ClientKey string
}

// StartRedis starts redis-server (no persistence) on a free loopback port and
// registers its shutdown with tb.Cleanup.
func StartRedis(tb testing.TB) *Redis { return StartRedisWith(tb, RedisOptions{}) }

// StartRedisWith starts redis-server with opts on a free loopback port and
// registers its shutdown with tb.Cleanup.
func StartRedisWith(tb testing.TB, opts RedisOptions) *Redis {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("testenv: redis-server not found in PATH (install it: apt-get install -y redis-server): %v", err)
	}
	dir := tb.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := FreePort(tb)
		r, err := startRedis(bin, dir, port, opts)
		if err == nil {
			tb.Cleanup(func() { r.Stop() })
			return r
		}
		lastErr = err
	}
	tb.Fatalf("testenv: start redis-server: %v", lastErr)
	return nil
}

func startRedis(bin, dir string, port int, opts RedisOptions) (*Redis, error) {
	args := []string{
		"--port", strconv.Itoa(port),
	}
	var tlsCfg *tls.Config
	if t := opts.TLS; t != nil {
		auth := "no"
		if t.AuthClients {
			auth = "yes"
		}
		args = []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", t.Cert, "--tls-key-file", t.Key,
			"--tls-ca-cert-file", t.CA, "--tls-auth-clients", auth}
		tlsCfg = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the readiness check only
		if t.AuthClients {
			pair, err := tls.LoadX509KeyPair(t.Client, t.ClientKey)
			if err != nil {
				return nil, fmt.Errorf("redis tls client certificate: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
	}
	args = append(args,
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--protected-mode", "yes",
	)
	if opts.AppendFsync != "" {
		args = append(args, "--appendonly", "yes", "--appendfsync", opts.AppendFsync)
	}
	if opts.Password != "" {
		args = append(args, "--requirepass", opts.Password)
	}
	args = append(args, opts.Args...)
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("redis-%d.log", port)))
	if err != nil {
		return nil, fmt.Errorf("create redis log: %w", err)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("exec redis-server: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	r := &Redis{Addr: addr, URL: "redis://" + addr + "/0", cmd: cmd, dir: dir, bin: bin, port: port, opts: opts, exited: make(chan struct{})}
	if opts.TLS != nil {
		r.URL = "rediss://" + addr + "/0"
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(r.exited) }()
	c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: tlsCfg, Password: opts.Password})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r, nil
		}
		if time.Now().After(deadline) || r.hasExited() {
			r.Stop()
			return nil, fmt.Errorf("redis-server on %s not ready: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the redis-server process id (0 if it is not running).
func (r *Redis) Pid() int {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Client returns a go-redis client for this server, closed at test end.
func (r *Redis) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server and waits (up to a second) until it is gone. It is
// safe to call more than once.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		select {
		case <-r.exited:
		case <-time.After(time.Second):
		}
	}
}

// Shutdown stops the server gracefully (SIGTERM: it writes its append-only
// file and exits) and waits up to 10 s until it is gone.
func (r *Redis) Shutdown() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
		}
	}
}

// Restart starts the server again, on the same port and directory (its
// data is back if it had persistence), after Stop or Shutdown.
func (r *Redis) Restart(tb testing.TB) {
	tb.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger a moment
		var nr *Redis
		if nr, err = startRedis(r.bin, r.dir, r.port, r.opts); err == nil {
			r.cmd, r.exited = nr.cmd, nr.exited
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("testenv: restart redis-server on %s: %v", r.Addr, err)
}

func (r *Redis) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// NATS is an embedded nats-server with JetStream.
type NATS struct {
	URL    string
	Server *natsserver.Server
	opts   natsserver.Options
	// conf, when set, is a configuration file read again at each start
	// (its accounts cannot be shared by two servers); opts is laid over
	// it (StartNATSConf).
	conf string
}

// StartNATS starts an embedded NATS server with JetStream on a free loopback
// port, storing into a temp dir, and shuts it down at test end.
func StartNATS(tb testing.TB) *NATS { return StartNATSWith(tb, nil) }

// StartNATSWith is StartNATS with the server's options changed by set
// first (users, TLS; nil: none).
func StartNATSWith(tb testing.TB, set func(*natsserver.Options)) *NATS {
	tb.Helper()
	return startNATS(tb, "", set)
}

// startNATS starts a server on a free loopback port with JetStream in a
// temp dir, configured by the file conf first when it is set, then by
// set; it stops at the test's end.
func startNATS(tb testing.TB, conf string, set func(*natsserver.Options)) *NATS {
	tb.Helper()
	n := &NATS{conf: conf, opts: natsserver.Options{
		Host:      "127.0.0.1",
		Port:      FreePort(tb),
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	}}
	if set != nil {
		set(&n.opts)
	}
	n.start(tb)
	tb.Cleanup(func() { n.Stop() })
	return n
}

func (n *NATS) start(tb testing.TB) {
	tb.Helper()
	opts := n.opts.Clone() // the server may change what it is given
	if n.conf != "" {
		var err error
		if opts, err = n.fromConf(); err != nil {
			tb.Fatalf("testenv: nats server configuration: %v", err)
		}
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		tb.Fatalf("testenv: new nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		tb.Fatalf("testenv: nats server not ready")
	}
	n.Server, n.URL = s, s.ClientURL()
}

// Stop shuts the server down (its JetStream store stays on disk).
func (n *NATS) Stop() {
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// Restart starts the server again on the same port and store, after Stop.
func (n *NATS) Restart(tb testing.TB) {
	tb.Helper()
	n.start(tb)
}

// Connect connects a client to the server (closed at the test's end) and
// returns it with its JetStream.
func (n *NATS) Connect(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(n.URL)
	if err != nil {
		tb.Fatalf("testenv: connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("testenv: jetstream: %v", err)
	}
	return nc, js
}

// RedisInfo returns one field of INFO (e.g. "total_commands_processed").
func RedisInfo(ctx context.Context, c *redis.Client, section, field string) (string, error) {
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", fmt.Errorf("redis INFO %s: %w", section, err)
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && k == field {
			return v, nil
		}
	}
	return "", fmt.Errorf("redis INFO %s: no field %q", section, field)
}

// RedisForExample starts redis-server (no persistence) on a free loopback
// port for an Example, which has no testing.TB, and returns a client on
// it and a func that closes the client and stops the server (defer it).
// It panics when the server cannot start.
func RedisForExample() (*redis.Client, func()) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		panic(fmt.Sprintf("testenv: redis-server not found in PATH (install it: apt-get install -y redis-server): %v", err))
	}
	dir, err := os.MkdirTemp("", "campaignd-example-redis-")
	if err != nil {
		panic(err)
	}
	for attempt := 0; attempt < 5; attempt++ { // a free port may be taken meanwhile
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		r, err := startRedis(bin, dir, port, RedisOptions{})
		if err != nil {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: r.Addr})
		return c, func() { _ = c.Close(); r.Stop(); _ = os.RemoveAll(dir) }
	}
	_ = os.RemoveAll(dir)
	panic("testenv: redis-server did not start")
}

package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSBinaryEnv names a nats-server binary for StartNATSCluster to run
// instead of looking one up on PATH.
const NATSBinaryEnv = "CAMPAIGND_TEST_NATS_SERVER"

// NATSNode is one node of a test cluster.
type NATSNode interface {
	Name() string
	Clients() int // client connections now
	Stop()        // shuts the node down; its store stays on disk
	Start(tb testing.TB)
}

// NATSCluster is three clustered NATS servers with JetStream on loopback.
type NATSCluster struct {
	URLs    []string // client URLs, one per node
	Nodes   []NATSNode
	Version string // the servers' version
}

// URL is every node's client URL, comma-separated (as nats.url takes them).
func (c *NATSCluster) URL() string { return strings.Join(c.URLs, ",") }

// NATSClusterOptions choose the servers of StartNATSCluster.
type NATSClusterOptions struct {
	// Binary runs this nats-server program for each node (e.g. Debian's
	// 2.9); empty: the embedded server this module builds with.
	Binary string
}

// NATSServerBinary is the nats-server program on PATH (or named by
// CAMPAIGND_TEST_NATS_SERVER). `make deps` installs Debian's; a test that
// needs it fails, with how to install it, when there is none.
func NATSServerBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(NATSBinaryEnv); p != "" {
		return p
	}
	p, err := exec.LookPath("nats-server")
	if err != nil {
		tb.Fatalf("testenv: nats-server not found (install it: apt-get install -y nats-server, or run make deps): %v", err)
	}
	return p
}

// StartNATSCluster starts three nodes in one cluster and returns once
// JetStream has a meta leader and an R3 stream can be created (a probe
// stream is created and deleted, as an operator checking the cluster
// would). Every node stops at the test's end.
func StartNATSCluster(tb testing.TB, o NATSClusterOptions) *NATSCluster {
	tb.Helper()
	cports := []int{FreePort(tb), FreePort(tb), FreePort(tb)}
	var routes []string
	for _, p := range cports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &NATSCluster{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i)
		port := FreePort(tb)
		var n NATSNode
		if o.Binary != "" {
			b := &binaryNode{bin: o.Binary, name: name, monitor: FreePort(tb), args: []string{
				"-a", "127.0.0.1", "-p", fmt.Sprint(port), "-n", name,
				"-js", "-sd", tb.TempDir(),
				"--cluster_name", "campaignd", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", cports[i]),
				"--routes", strings.Join(routes, ","),
			}}
			b.args = append(b.args, "-m", fmt.Sprint(b.monitor))
			n = b
		} else {
			n = &NATS{opts: natsserver.Options{
				ServerName: name, Host: "127.0.0.1", Port: port,
				JetStream: true, StoreDir: tb.TempDir(), NoSigs: true, NoLog: true,
				Cluster: natsserver.ClusterOpts{Name: "campaignd", Host: "127.0.0.1", Port: cports[i]},
				Routes:  natsserver.RoutesFromStr(strings.Join(routes, ",")),
			}}
		}
		n.Start(tb)
		tb.Cleanup(n.Stop)
		c.Nodes = append(c.Nodes, n)
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", port))
	}
	c.waitReady(tb)
	return c
}

// waitReady waits for a meta leader, then creates and deletes an R3 probe
// stream.
func (c *NATSCluster) waitReady(tb testing.TB) {
	tb.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1))
	if err != nil {
		tb.Fatalf("testenv: connect to the nats cluster: %v", err)
	}
	defer nc.Close()
	c.Version = nc.ConnectedServerVersion()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	var last error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, last = js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"testenv.probe"}, Replicas: 3})
		if last == nil {
			last = js.DeleteStream(ctx, "PROBE")
		}
		cancel()
		if last == nil {
			return
		}
	}
	tb.Fatalf("testenv: jetstream cluster not ready after 60 s: %v", last)
}

// An embedded node is a NATS (testenv.go) with cluster options.

// Name is the server's name.
func (n *NATS) Name() string { return n.opts.ServerName }

// Clients is how many clients are connected now.
func (n *NATS) Clients() int { return n.Server.NumClients() }

// Start starts the server again with its options (NATSNode).
func (n *NATS) Start(tb testing.TB) { n.start(tb) }

// binaryNode is a nats-server process.
type binaryNode struct {
	bin, name string
	monitor   int
	args      []string
	cmd       *exec.Cmd
	done      chan struct{}
}

func (n *binaryNode) Name() string { return n.name }

func (n *binaryNode) Start(tb testing.TB) {
	tb.Helper()
	cmd := exec.Command(n.bin, n.args...)
	logf, err := os.Create(filepath.Join(tb.TempDir(), n.name+".log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("testenv: start %s: %v", n.bin, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	done := n.done
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := n.varz(); err == nil {
			return
		}
		select {
		case <-done:
			tb.Fatalf("testenv: nats-server %s exited at start; log %s", n.name, logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			n.Stop()
			tb.Fatalf("testenv: nats-server %s not ready after 10 s", n.name)
		}
	}
}

// Stop ends the process gracefully (SIGTERM), and kills it after 10 s.
func (n *binaryNode) Stop() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *binaryNode) Clients() int {
	v, err := n.varz()
	if err != nil {
		return 0
	}
	return v.Connections
}

type varz struct {
	Connections int `json:"connections"`
}

func (n *binaryNode) varz() (varz, error) {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", n.monitor))
	if err != nil {
		return varz{}, err
	}
	defer resp.Body.Close()
	var v varz
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return varz{}, fmt.Errorf("testenv: varz of %s: %w", n.name, err)
	}
	return v, nil
}

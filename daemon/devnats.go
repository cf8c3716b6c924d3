package daemon

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// startDevNATS runs an embedded NATS server with JetStream listening where
// natsURL points (a loopback host), storing in dir (a temp dir when empty).
// It returns a stop function.
func startDevNATS(natsURL, dir string) (stop func(), err error) {
	u, err := url.Parse(natsURL)
	if err != nil {
		return nil, fmt.Errorf("dev nats: parse nats.url: %w", err)
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("dev nats: nats.url %q needs host:port: %w", natsURL, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("dev nats: nats.url port %q: %w", portStr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("dev nats: nats.url host %q is not a loopback address", host)
	}
	tmp := ""
	if dir == "" {
		tmp, err = os.MkdirTemp("", "campaignd-jetstream-")
		if err != nil {
			return nil, fmt.Errorf("dev nats: store dir: %w", err)
		}
		dir = tmp
	}
	s, err := natsserver.NewServer(&natsserver.Options{
		Host:      host,
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("dev nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("dev nats: server on %s:%d not ready", host, port)
	}
	return func() {
		s.Shutdown()
		s.WaitForShutdown()
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
	}, nil
}

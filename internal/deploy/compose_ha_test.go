package deploy

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/campaignd/campaignd/config"
)

const haComposeFile = "docker-compose.ha.yml"

func loadHACompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, haComposeFile)},
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{"CAMPAIGND_UI_PASSWORD=secret-for-test"}),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %s: %v", haComposeFile, err)
	}
	return p
}

// TestComposeHA loads docker-compose.ha.yml as docker compose would and
// checks that its pieces fit together: the NATS nodes (their command lines
// parsed by nats-server's own flag parser) form one cluster, the Sentinels
// (their config as the shell writes it) monitor the one master, and
// campaignd's config — loaded through config.Load with the environment the
// compose file gives it — names those Sentinels, that master, every NATS node
// and 3 replicas. Not parallel: nats-server's flag parser writes a global.
func TestComposeHA(t *testing.T) {
	p := loadHACompose(t)
	if p.Name != "campaignd-ha" {
		t.Errorf("project name %q: want campaignd-ha (its own volumes, beside docker-compose.yml's)", p.Name)
	}
	names := p.ServiceNames()
	slices.Sort(names)
	want := []string{"campaignd-1", "campaignd-2", "nats-1", "nats-2", "nats-3", "pushsim",
		"redis-master", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
	if !slices.Equal(names, want) {
		t.Fatalf("services = %v, want %v", names, want)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	natsNodes := []string{"nats-1", "nats-2", "nats-3"}
	sentinels := []string{"sentinel-1", "sentinel-2", "sentinel-3"}

	checkDependsOn(t, p)
	checkDataVolumes(t, p, []string{"redis-master", "redis-replica", "nats-1", "nats-2", "nats-3"})

	// Redis: one master, one replica of it, both announcing their names.
	master := redisArgs(t, svc("redis-master"))
	if got := master["--appendonly"]; !slices.Equal(got, []string{"yes"}) {
		t.Errorf("redis-master must run with AOF on, --appendonly %v", got)
	}
	if _, ok := master["--replicaof"]; ok {
		t.Errorf("redis-master is started as a replica: %v", master["--replicaof"])
	}
	replica := redisArgs(t, svc("redis-replica"))
	if got := replica["--replicaof"]; !slices.Equal(got, []string{"redis-master", strconv.Itoa(redisPort(master))}) {
		t.Errorf("redis-replica --replicaof %v, want redis-master %d", got, redisPort(master))
	}
	for name, args := range map[string]map[string][]string{"redis-master": master, "redis-replica": replica} {
		if got := args["--replica-announce-ip"]; !slices.Equal(got, []string{name}) {
			t.Errorf("%s --replica-announce-ip %v, want its service name (the Sentinels announce hostnames)", name, got)
		}
	}
	if d, ok := svc("redis-replica").DependsOn["redis-master"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("redis-replica should wait for a healthy redis-master: %+v", svc("redis-replica").DependsOn)
	}

	// Sentinels: the same master name and address, quorum a majority.
	var masterName string
	sentinelAddrs := map[string]bool{}
	for _, name := range sentinels {
		sc := sentinelConfig(t, svc(name))
		if masterName == "" {
			masterName = sc.master
		}
		if sc.master != masterName {
			t.Errorf("%s monitors %q, sentinel-1 %q", name, sc.master, masterName)
		}
		if sc.host != "redis-master" || sc.port != redisPort(master) {
			t.Errorf("%s monitors %s:%d, want redis-master:%d", name, sc.host, sc.port, redisPort(master))
		}
		if sc.quorum <= len(sentinels)/2 || sc.quorum > len(sentinels) {
			t.Errorf("%s quorum %d: want a majority of %d", name, sc.quorum, len(sentinels))
		}
		if sc.announceIP != name {
			t.Errorf("%s announces %q, want its service name", name, sc.announceIP)
		}
		if d, ok := svc(name).DependsOn["redis-master"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s must start after redis-master is healthy (resolve-hostnames fails on a name not yet there)", name)
		}
		sentinelAddrs[net.JoinHostPort(name, strconv.Itoa(sc.listen))] = true
	}

	// NATS: one cluster, each node routing to the two others, JetStream on.
	clusterName := ""
	clientURLs := map[string]bool{}
	for _, name := range natsNodes {
		o := natsOptions(t, svc(name))
		if o.ServerName != name {
			t.Errorf("%s: server name %q, want its service name (JetStream needs unique names)", name, o.ServerName)
		}
		if clusterName == "" {
			clusterName = o.Cluster.Name
		}
		if o.Cluster.Name == "" || o.Cluster.Name != clusterName {
			t.Errorf("%s: cluster name %q, nats-1 %q", name, o.Cluster.Name, clusterName)
		}
		if o.Cluster.Port == 0 || (o.Cluster.Host != "0.0.0.0" && o.Cluster.Host != "") {
			t.Errorf("%s: cluster listen %s:%d, want all interfaces", name, o.Cluster.Host, o.Cluster.Port)
		}
		if !o.JetStream {
			t.Errorf("%s: JetStream is off", name)
		}
		if !hasNamedVolumeAt(p, svc(name), o.StoreDir) {
			t.Errorf("%s: JetStream store %q is not on a named volume: %+v", name, o.StoreDir, svc(name).Volumes)
		}
		var routes, wantRoutes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		for _, other := range natsNodes {
			if other != name {
				wantRoutes = append(wantRoutes, net.JoinHostPort(other, strconv.Itoa(natsOptions(t, svc(other)).Cluster.Port)))
			}
		}
		slices.Sort(routes)
		if !slices.Equal(routes, wantRoutes) {
			t.Errorf("%s routes %v, want the two other nodes %v", name, routes, wantRoutes)
		}
		var check string
		if hc := svc(name).HealthCheck; hc != nil {
			check = strings.Join(hc.Test, " ")
		}
		if !strings.Contains(check, fmt.Sprintf(":%d/healthz", o.HTTPPort)) {
			t.Errorf("%s: health check %q does not ask the monitor port %d", name, check, o.HTTPPort)
		}
		if strings.Contains(check, "wget") && !strings.Contains(svc(name).Image, "alpine") {
			t.Errorf("%s: image %s has no wget for its health check (the plain nats image is FROM scratch)", name, svc(name).Image)
		}
		port := o.Port
		if port == 0 {
			port = natsserver.DEFAULT_PORT
		}
		clientURLs[net.JoinHostPort(name, strconv.Itoa(port))] = true
	}

	// pushsim
	ps := svc("pushsim")
	if !publishes(ps, 9900) {
		t.Errorf("pushsim does not publish 9900: %+v", ps.Ports)
	}

	// campaignd: two processes, one config, the pieces above.
	hostPorts := map[string]string{}
	for _, name := range []string{"campaignd-1", "campaignd-2"} {
		cd := svc(name)
		if cd.Build == nil || cd.Build.Context == "" {
			t.Fatalf("%s must be built from the repository", name)
		}
		if _, err := os.Stat(filepath.Join(cd.Build.Context, "Dockerfile")); err != nil {
			t.Errorf("%s build context has no Dockerfile: %v", name, err)
		}
		if len(cd.Command) != 2 || cd.Command[0] != "-config" {
			t.Fatalf("%s command %v, want -config FILE", name, cd.Command)
		}
		var cfgMount *types.ServiceVolumeConfig
		for i, v := range cd.Volumes {
			if v.Target == cd.Command[1] {
				cfgMount = &cd.Volumes[i]
			}
		}
		if cfgMount == nil {
			t.Fatalf("%s does not mount its config %s: %+v", name, cd.Command[1], cd.Volumes)
		}
		if !cfgMount.ReadOnly {
			t.Errorf("%s: config mount should be read-only", name)
		}
		if filepath.Base(cfgMount.Source) != "docker-ha.yaml" {
			t.Errorf("%s mounts %s, want configs/docker-ha.yaml", name, cfgMount.Source)
		}
		env := map[string]string{}
		for k, v := range cd.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		if env["CAMPAIGND_UI_PASSWORD"] != "secret-for-test" {
			t.Errorf("%s: CAMPAIGND_UI_PASSWORD not taken from the environment: %q", name, env["CAMPAIGND_UI_PASSWORD"])
		}
		cfg, err := config.Load(cfgMount.Source, func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("%s: its config with its environment: %v", name, err)
		}
		sn := cfg.Redis.Sentinel
		if sn == nil || cfg.Redis.URL != "" {
			t.Fatalf("%s: redis %+v, want Sentinel and no URL", name, cfg.Redis)
		}
		if sn.Master != masterName {
			t.Errorf("%s: redis.sentinel.master %q, the Sentinels monitor %q", name, sn.Master, masterName)
		}
		got := map[string]bool{}
		for _, a := range sn.Addrs {
			got[a] = true
		}
		if !mapsEqual(got, sentinelAddrs) {
			t.Errorf("%s: redis.sentinel.addrs %v, want the Sentinel services %v", name, sn.Addrs, keys(sentinelAddrs))
		}
		got = map[string]bool{}
		for _, u := range strings.Split(cfg.NATS.URL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil || pu.Scheme != "nats" {
				t.Errorf("%s: nats.url part %q: %v", name, u, err)
				continue
			}
			got[pu.Host] = true
		}
		if !mapsEqual(got, clientURLs) {
			t.Errorf("%s: nats.url %q, want every node %v", name, cfg.NATS.URL, keys(clientURLs))
		}
		if cfg.NATS.Replicas != len(natsNodes) {
			t.Errorf("%s: nats.replicas %d, want %d (one per node)", name, cfg.NATS.Replicas, len(natsNodes))
		}
		_, httpPort, err := net.SplitHostPort(cfg.HTTP.Addr)
		if err != nil {
			t.Fatalf("%s: http.addr %q: %v", name, cfg.HTTP.Addr, err)
		}
		hp, _ := strconv.Atoi(httpPort)
		for _, port := range cd.Ports {
			if int(port.Target) == hp && port.Published != "" {
				if other, dup := hostPorts[port.Published]; dup {
					t.Errorf("%s and %s both publish host port %s", name, other, port.Published)
				}
				hostPorts[port.Published] = name
			}
		}
		if !publishes(cd, uint32(hp)) {
			t.Errorf("%s does not publish its HTTP port %d: %+v", name, hp, cd.Ports)
		}
		if cfg.HTTP.BasicAuth.Password != "secret-for-test" {
			t.Errorf("%s: the UI password does not reach the config", name)
		}
		for app, a := range cfg.Apps {
			if u, err := url.Parse(a.BaseURL); err != nil || u.Hostname() != "pushsim" || u.Port() != "9900" {
				t.Errorf("%s: apps.%s.base_url %q, want the pushsim service", name, app, a.BaseURL)
			}
		}
		for _, dep := range append(append([]string{"pushsim"}, sentinels...), natsNodes...) {
			d, ok := cd.DependsOn[dep]
			if !ok {
				t.Errorf("%s does not depend on %s", name, dep)
				continue
			}
			if dep != "pushsim" && d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s should wait for a healthy %s, got %q", name, dep, d.Condition)
			}
		}
	}
}

// checkDependsOn: every dependency exists, and one waited for as healthy has
// a health check; every Redis, Sentinel and NATS service has one.
func checkDependsOn(t *testing.T, p *types.Project) {
	t.Helper()
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			target, err := p.GetService(dep)
			if err != nil {
				t.Errorf("%s depends on %s: %v", s.Name, dep, err)
				continue
			}
			if d.Condition == types.ServiceConditionHealthy && !hasHealthCheck(target) {
				t.Errorf("%s waits for %s to be healthy, but %s has no health check", s.Name, dep, dep)
			}
		}
		if strings.HasPrefix(s.Name, "redis-") || strings.HasPrefix(s.Name, "sentinel-") || strings.HasPrefix(s.Name, "nats-") {
			if !hasHealthCheck(s) {
				t.Errorf("%s has no health check", s.Name)
			}
		}
	}
}

func hasHealthCheck(s types.ServiceConfig) bool {
	return s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 1 && s.HealthCheck.Test[0] != "NONE"
}

// checkDataVolumes: each stateful service keeps /data on a named volume of
// its own.
func checkDataVolumes(t *testing.T, p *types.Project, services []string) {
	t.Helper()
	owner := map[string]string{}
	for _, name := range services {
		s, _ := p.GetService(name)
		if !hasNamedVolumeAt(p, s, "/data") {
			t.Errorf("%s has no named volume on /data: %+v", name, s.Volumes)
			continue
		}
		for _, v := range s.Volumes {
			if v.Target == "/data" {
				if other, ok := owner[v.Source]; ok {
					t.Errorf("%s and %s share the volume %s", name, other, v.Source)
				}
				owner[v.Source] = name
			}
		}
	}
}

func hasNamedVolumeAt(p *types.Project, s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeVolume {
			if _, ok := p.Volumes[v.Source]; ok {
				return true
			}
		}
	}
	return false
}

// redisArgs parses a redis-server command line into its --options.
func redisArgs(t *testing.T, s types.ServiceConfig) map[string][]string {
	t.Helper()
	if len(s.Command) == 0 || s.Command[0] != "redis-server" {
		t.Fatalf("%s: command %v, want redis-server …", s.Name, s.Command)
	}
	out := map[string][]string{}
	key := ""
	for _, a := range s.Command[1:] {
		if strings.HasPrefix(a, "--") {
			key = a
			out[key] = nil
			continue
		}
		if key == "" {
			t.Fatalf("%s: argument %q before any --option", s.Name, a)
		}
		out[key] = append(out[key], a)
	}
	return out
}

func redisPort(args map[string][]string) int {
	if v := args["--port"]; len(v) == 1 {
		n, _ := strconv.Atoi(v[0])
		return n
	}
	return 6379
}

// natsOptions parses a node's command line with nats-server's own parser.
func natsOptions(t *testing.T, s types.ServiceConfig) *natsserver.Options {
	t.Helper()
	args := []string(s.Command)
	if len(args) > 0 && args[0] == "nats-server" {
		args = args[1:]
	}
	fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	o, err := natsserver.ConfigureOptions(fs, args, noop, noop, noop)
	if err != nil {
		t.Fatalf("%s: nats-server %v: %v", s.Name, args, err)
	}
	if fs.NArg() != 0 {
		t.Fatalf("%s: nats-server ignores %v (flags stop at the first non-flag)", s.Name, fs.Args())
	}
	return o
}

type sentinelConf struct {
	listen     int // its own port
	master     string
	host       string
	port       int
	quorum     int
	announceIP string
}

// sentinelConfig reads the sentinel.conf a Sentinel service writes at start:
// its command must be sh -c with a heredoc into a file that redis-sentinel
// then runs; ${VAR}s are the service's environment, as for the shell.
func sentinelConfig(t *testing.T, s types.ServiceConfig) sentinelConf {
	t.Helper()
	if len(s.Command) != 3 || s.Command[0] != "sh" || s.Command[1] != "-c" {
		t.Fatalf("%s: command %v, want sh -c SCRIPT", s.Name, s.Command)
	}
	script := s.Command[2]
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("%s: the script is not valid sh: %v\n%s", s.Name, err, out)
		}
	}
	var conf, written string
	var body []string
	inDoc := false
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		switch {
		case inDoc && strings.TrimSpace(line) == "EOF":
			inDoc = false
		case inDoc:
			body = append(body, line)
		case len(f) == 4 && f[0] == "cat" && f[1] == ">" && f[3] == "<<EOF":
			written, inDoc = f[2], true
		case len(f) == 3 && f[0] == "exec" && f[1] == "redis-sentinel":
			conf = f[2]
		}
	}
	if written == "" || conf != written {
		t.Fatalf("%s: the script writes %q and runs redis-sentinel on %q", s.Name, written, conf)
	}
	if !strings.HasPrefix(written, "/tmp/") {
		t.Errorf("%s: %s should be somewhere the sentinel user may write (it rewrites its config)", s.Name, written)
	}
	env := func(k string) string {
		v, ok := s.Environment[k]
		if !ok || v == nil {
			t.Errorf("%s: the config uses $%s, which its environment lacks", s.Name, k)
			return ""
		}
		return *v
	}
	sc := sentinelConf{listen: 26379}
	seen := map[string]bool{}
	for _, line := range body {
		f := strings.Fields(os.Expand(line, env))
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] == "port" && len(f) == 2 {
			sc.listen, _ = strconv.Atoi(f[1])
			continue
		}
		if f[0] != "sentinel" || len(f) < 3 {
			t.Errorf("%s: unexpected line %q", s.Name, line)
			continue
		}
		switch f[1] {
		case "resolve-hostnames", "announce-hostnames":
			if f[2] != "yes" {
				t.Errorf("%s: sentinel %s %s, want yes", s.Name, f[1], f[2])
			}
			if sc.master != "" {
				t.Errorf("%s: sentinel %s comes after sentinel monitor: the hostname is not resolved", s.Name, f[1])
			}
			seen[f[1]] = true
		case "announce-ip":
			sc.announceIP = f[2]
		case "announce-port":
			if n, _ := strconv.Atoi(f[2]); n != sc.listen {
				t.Errorf("%s: announces port %d, listens on %d", s.Name, n, sc.listen)
			}
		case "monitor":
			if len(f) != 6 {
				t.Fatalf("%s: %q: want sentinel monitor NAME HOST PORT QUORUM", s.Name, line)
			}
			sc.master, sc.host = f[2], f[3]
			sc.port, _ = strconv.Atoi(f[4])
			sc.quorum, _ = strconv.Atoi(f[5])
		default: // per-master options: sentinel OPTION NAME VALUE
			if len(f) != 4 || f[2] != sc.master {
				t.Errorf("%s: %q does not apply to the monitored master %q (monitor it first)", s.Name, line, sc.master)
			}
		}
	}
	if sc.master == "" {
		t.Fatalf("%s: no sentinel monitor line", s.Name)
	}
	for _, k := range []string{"resolve-hostnames", "announce-hostnames"} {
		if !seen[k] {
			t.Errorf("%s: sentinel %s yes is missing (compose service names are hostnames)", s.Name, k)
		}
	}
	if hc := s.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), strconv.Itoa(sc.listen)) {
		t.Errorf("%s: health check %+v does not ask port %d", s.Name, s.HealthCheck, sc.listen)
	}
	return sc
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Package deploy checks the deployment files at the repository root. There is
// no Docker engine on the build machines, so docker-compose.yml is loaded and
// checked with compose-go, the library docker compose itself uses.
package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{"CAMPAIGND_UI_PASSWORD=secret-for-test"}),
		cli.WithName("campaignd"),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	names := p.ServiceNames()
	slices.Sort(names)
	if want := []string{"campaignd", "nats", "pushsim", "redis"}; !slices.Equal(names, want) {
		t.Fatalf("services = %v, want %v", names, want)
	}

	redis, _ := p.GetService("redis")
	if !strings.Contains(strings.Join(redis.Command, " "), "--appendonly yes") {
		t.Errorf("redis must run with AOF on, command = %v", redis.Command)
	}
	if !hasVolumeTarget(redis, "/data") {
		t.Errorf("redis has no volume on /data: %+v", redis.Volumes)
	}

	nats, _ := p.GetService("nats")
	if !slices.Contains(nats.Command, "--jetstream") {
		t.Errorf("nats must enable JetStream, command = %v", nats.Command)
	}
	if !hasVolumeTarget(nats, "/data") {
		t.Errorf("nats has no volume for its JetStream store: %+v", nats.Volumes)
	}

	cd, _ := p.GetService("campaignd")
	if cd.Build == nil || cd.Build.Context == "" {
		t.Errorf("campaignd must be built from the repository")
	}
	if _, err := os.Stat(filepath.Join(cd.Build.Context, "Dockerfile")); err != nil {
		t.Errorf("campaignd build context has no Dockerfile: %v", err)
	}
	for _, dep := range []string{"redis", "nats", "pushsim"} {
		if _, ok := cd.DependsOn[dep]; !ok {
			t.Errorf("campaignd does not depend on %s", dep)
		}
	}
	if cd.DependsOn["redis"].Condition != types.ServiceConditionHealthy {
		t.Errorf("campaignd should wait for a healthy redis, got %q", cd.DependsOn["redis"].Condition)
	}
	if !publishes(cd, 8080) {
		t.Errorf("campaignd does not publish the UI port 8080: %+v", cd.Ports)
	}
	var cfgMount *types.ServiceVolumeConfig
	for i, v := range cd.Volumes {
		if v.Target == "/etc/campaignd/docker.yaml" {
			cfgMount = &cd.Volumes[i]
		}
	}
	if cfgMount == nil {
		t.Fatalf("campaignd does not mount its config: %+v", cd.Volumes)
	}
	if _, err := os.Stat(cfgMount.Source); err != nil {
		t.Errorf("mounted config %s: %v", cfgMount.Source, err)
	}
	if !cfgMount.ReadOnly {
		t.Errorf("config mount should be read-only")
	}
	env := cd.Environment
	for _, k := range []string{"CAMPAIGND_REDIS_URL", "CAMPAIGND_NATS_URL", "CAMPAIGND_HTTP_ADDR", "PUSHSIM_URL"} {
		if env[k] == nil || *env[k] == "" {
			t.Errorf("campaignd environment lacks %s", k)
		}
	}
	if got := *env["CAMPAIGND_REDIS_URL"]; !strings.Contains(got, "redis:6379") {
		t.Errorf("CAMPAIGND_REDIS_URL = %q, want the redis service", got)
	}
	if got := *env["CAMPAIGND_UI_PASSWORD"]; got != "secret-for-test" {
		t.Errorf("CAMPAIGND_UI_PASSWORD not taken from the environment: %q", got)
	}

	ps, _ := p.GetService("pushsim")
	if !publishes(ps, 9900) {
		t.Errorf("pushsim does not publish 9900: %+v", ps.Ports)
	}
	for _, v := range []string{"redis-data", "nats-data"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("named volume %s missing", v)
		}
	}
}

func hasVolumeTarget(s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Target == target {
			return true
		}
	}
	return false
}

func publishes(s types.ServiceConfig, port uint32) bool {
	for _, p := range s.Ports {
		if p.Target == port && p.Published != "" {
			return true
		}
	}
	return false
}

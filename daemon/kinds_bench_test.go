package daemon

import (
	"sync"
	"testing"
	"time"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// groupMeter samples pushsim's call counts of some groups and keeps, per
// group, when the first and the last call were seen.
type groupMeter struct {
	mu          sync.Mutex
	first, last map[provider.Group]time.Time
	n           map[provider.Group]int
	stop        chan struct{}
	done        chan struct{}
}

func meterGroups(sim *pushsim.Sim, app string, groups ...provider.Group) *groupMeter {
	m := &groupMeter{first: map[provider.Group]time.Time{}, last: map[provider.Group]time.Time{}, n: map[provider.Group]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
			st := sim.Stats()
			now := time.Now()
			m.mu.Lock()
			for _, g := range groups {
				c := st.CallsFor("easemob", app, g)
				if c > m.n[g] {
					if m.n[g] == 0 {
						m.first[g] = now
					}
					m.n[g], m.last[g] = c, now
				}
			}
			m.mu.Unlock()
		}
	}()
	return m
}

// halt stops sampling.
func (m *groupMeter) halt() {
	close(m.stop)
	<-m.done
}

// share is the achieved part of limit r between the group's first and last
// call: n calls span n−1 intervals of 1/r.
func (m *groupMeter) share(g provider.Group, r float64) (calls int, share float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.n[g]
	d := m.last[g].Sub(m.first[g]).Seconds()
	if n < 2 || d <= 0 {
		return n, 0
	}
	return n, float64(n-1) / (d * r)
}

// BenchmarkKinds measures how much of their limits the non-push kinds use
// (`make bench-kinds`; results in docs/BENCHMARKS.md): user_settings with
// all six settings for 5,000 users at user=100 and notification=100, and
// label_members adding 20,000 users at label_user=30 (100 per call).
func BenchmarkKinds(b *testing.B) {
	b.Run("user_settings_5000", func(b *testing.B) {
		for range b.N {
			w := newWorld(b, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupUser: 100, provider.GroupNotification: 100}})
			cfg := w.config(b, config.Limits{provider.GroupUser: 100, provider.GroupNotification: 100})
			cfg.Worker.Concurrency = 50
			r := start(b, cfg)
			users := ids("bu", 5000)
			m := meterGroups(w.sim.Sim(), "org/app", provider.GroupUser, provider.GroupNotification)
			t0 := time.Now()
			id := "bench-settings"
			submitJSON(b, w, map[string]any{"id": id, "kind": "user_settings", "targets": users,
				"settings": map[string]any{"nickname": "Shop", "notification_display_style": 1, "type": "AT",
					"ignoreInterval": "21:30-08:00", "ignoreDuration": 3600000, "language": "EU"}})
			st := r.waitFinal(b, id, 10*time.Minute)
			took := time.Since(t0)
			m.halt()
			nu, su := m.share(provider.GroupUser, 100)
			nn, sn := m.share(provider.GroupNotification, 100)
			sim := w.sim.Sim().Stats()
			b.ReportMetric(100*su, "%user_limit")
			b.ReportMetric(100*sn, "%notification_limit")
			b.ReportMetric(float64(nu+nn)/5000, "calls/user")
			b.Logf("user_settings 5000 users: %s in %.1fs; user %d calls at %.2f%% of 100/s, notification %d calls at %.2f%% of 100/s; %.2f calls/user; violations %d %+v",
				st.Status, took.Seconds(), nu, 100*su, nn, 100*sn, float64(nu+nn)/5000, sim.Violations, sim.ViolationList)
		}
	})
	b.Run("label_members_20000", func(b *testing.B) {
		for range b.N {
			w := newWorld(b, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupLabelUser: 30}})
			cfg := w.config(b, config.Limits{provider.GroupLabelUser: 30})
			cfg.Worker.Concurrency = 50
			r := start(b, cfg)
			m := meterGroups(w.sim.Sim(), "org/app", provider.GroupLabelUser)
			t0 := time.Now()
			id := "bench-label"
			submitJSON(b, w, map[string]any{"id": id, "kind": "label_members", "action": "add",
				"label": "bench", "targets": ids("bl", 20000)})
			st := r.waitFinal(b, id, 10*time.Minute)
			took := time.Since(t0)
			m.halt()
			n, share := m.share(provider.GroupLabelUser, 30)
			l, _ := w.sim.Sim().Label("org", "app", "bench")
			sim := w.sim.Sim().Stats()
			b.ReportMetric(100*share, "%label_user_limit")
			b.ReportMetric(share*30*100, "users/s")
			b.Logf("label_members 20000 users: %s in %.1fs; %d member calls at %.2f%% of 30/s (%.0f users/s of 3000); label holds %d; violations %d",
				st.Status, took.Seconds(), n, 100*share, share*30*100, l.Count, sim.Violations)
		}
	})
}

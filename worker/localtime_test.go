package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/store"
)

// zoneAudience is a local-time audience of unique ids, each first listed
// with one of zones (or none: the window's zone, ""), then listed again
// with another zone (the first line wins), plus lines with unknown zones;
// shuffled so that repeats fall in other chunks and parts. want is each
// id's zone.
func zoneAudience(unique int, zones []string) (text []byte, want map[string]string, lines int) {
	r := rand.New(rand.NewPCG(3, 4))
	want = map[string]string{}
	var firsts, repeats []string
	for i := range unique {
		id := fmt.Sprintf("lt%06d", i)
		z := zones[r.IntN(len(zones))]
		want[id] = z
		if z == "" {
			firsts = append(firsts, id)
		} else {
			firsts = append(firsts, id+","+z)
		}
		if i%4 == 0 {
			repeats = append(repeats, id+","+zones[(r.IntN(len(zones)-1)+1)%len(zones)])
		}
	}
	r.Shuffle(len(firsts), func(i, j int) { firsts[i], firsts[j] = firsts[j], firsts[i] })
	// Each repeat after its first line: appended at the end, shuffled
	// among themselves.
	r.Shuffle(len(repeats), func(i, j int) { repeats[i], repeats[j] = repeats[j], repeats[i] })
	all := append(append(firsts, repeats...), "bad1,Mars/Olympus", "bad2,", "bad3,Local")
	return []byte(strings.Join(all, "\n") + "\n"), want, len(all)
}

// A local-time audience planned in several passes: every batch holds one
// zone's targets (at most 100), each id is in one batch, in the zone of
// its first line, and the lines with unknown zones are counted invalid;
// the plan with one pass makes the same zones. The window is open one
// second a day in every zone: nothing is sent, the batches stay stored.
func TestLocalTimeAudienceIsGroupedByZone(t *testing.T) {
	t.Parallel()
	zones := []string{"", "Asia/Tokyo", "Europe/Paris", "America/New_York", "Australia/Adelaide"}
	text, want, lines := zoneAudience(12_000, zones)
	for _, memory := range []int64{96 << 10, 64 << 20} {
		t.Run(fmt.Sprintf("plan memory %d", memory), func(t *testing.T) {
			t.Parallel()
			aud := &memAudience{}
			aud.put("zones", text)
			e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud, Memory: memory, SpillDir: t.TempDir()}})
			c := &campaigns.Campaign{ID: "lt", Kind: campaigns.KindBatchPush, PushMessage: msg(), Audience: &campaigns.Audience{Bucket: "b", Object: "zones"},
				SendWindow: &campaigns.SendWindow{From: "12:00:00", To: "12:00:01", Timezone: "UTC", LocalTime: true}}
			e.submit(t, c, time.Now())
			st := testenv.WaitFor(t, 30*time.Second, "the plan", func() (campaigns.Status, bool) {
				st, err := e.store.Status(context.Background(), "lt")
				return st, err == nil && st.Planned
			})
			if st.TargetsTotal != 12_000 || st.Duplicates != 3_000 || st.Invalid != 3 {
				t.Fatalf("status %+v: want 12,000 targets, 3,000 duplicates, 3 invalid of %d lines", st, lines)
			}
			r, err := e.store.BatchInfos(context.Background(), "lt", 0, int(st.BatchesTotal))
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			partial := map[string]int{}
			for n, b := range r.Batches {
				if b.Missing || len(b.Targets) == 0 || len(b.Targets) > 100 || b.Zone == "" {
					t.Fatalf("batch %d: %d targets, zone %q", n, len(b.Targets), b.Zone)
				}
				if len(b.Targets) < 100 {
					partial[b.Zone]++
				}
				for _, id := range b.Targets {
					zone := want[id]
					if zone == "" {
						zone = "UTC" // the window's
					}
					if seen[id] || zone != b.Zone {
						t.Fatalf("batch %d (%s): %s seen before %v, its zone %s", n, b.Zone, id, seen[id], zone)
					}
					seen[id] = true
				}
			}
			p, err := e.store.PlanParams(context.Background(), "lt", func() (store.PlanParams, error) {
				t.Fatal("plan parameters not stored")
				return store.PlanParams{}, nil
			})
			if err != nil || (memory < 1<<20) != (p.Parts > 1) {
				t.Fatalf("plan parameters %+v (%v) with plan memory %d", p, err, memory)
			}
			if len(seen) != 12_000 {
				t.Fatalf("%d ids in the batches, want 12,000", len(seen))
			}
			for z, n := range partial {
				if n > 1 {
					t.Errorf("zone %s has %d partial batches, want at most one", z, n)
				}
			}
			if calls, _ := e.prov.snapshot(); len(calls) > 5 { // a zone's one second may be now
				t.Errorf("%d calls while every zone's window is closed", len(calls))
			}
		})
	}
}

// Inline local-time targets are grouped the same way, the first zone of
// an id winning.
func TestLocalTimeTargetsAreGroupedByZone(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{}})
	targets := []string{"a,Asia/Tokyo", "b", "c,Asia/Tokyo", "a,Europe/Paris", "d,Europe/Paris", "b,Asia/Tokyo"}
	c := &campaigns.Campaign{ID: "lti", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets,
		SendWindow: &campaigns.SendWindow{From: "12:00:00", To: "12:00:01", Timezone: "UTC", LocalTime: true}}
	e.submit(t, c, time.Now())
	st := testenv.WaitFor(t, 30*time.Second, "the plan", func() (campaigns.Status, bool) {
		st, err := e.store.Status(context.Background(), "lti")
		return st, err == nil && st.Planned
	})
	if st.TargetsTotal != 4 || st.Duplicates != 2 || st.BatchesTotal != 3 {
		t.Fatalf("status %+v", st)
	}
	r, err := e.store.BatchInfos(context.Background(), "lti", 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range r.Batches {
		got[b.Zone] = strings.Join(b.Targets, " ")
	}
	want := map[string]string{"Asia/Tokyo": "a c", "UTC": "b", "Europe/Paris": "d"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches by zone %v, want %v", got, want)
	}
}

// idBytes counts the ids' bytes of a local-time audience, whatever the
// writes' boundaries.
func TestIDBytes(t *testing.T) {
	t.Parallel()
	text := "u1,Asia/Tokyo\nu22\nu333,a,b,UTC\n\nlast,Europe/Paris"
	want := int64(len("u1\nu22\nu333,a,b\n\nlast\n"))
	for _, chunk := range []int{1, 2, 5, len(text)} {
		w := newIDBytes()
		for i := 0; i < len(text); i += chunk {
			if _, err := w.Write([]byte(text[i:min(i+chunk, len(text))])); err != nil {
				t.Fatal(err)
			}
		}
		if got := w.Total(); got != want {
			t.Errorf("writes of %d bytes: %d, want %d", chunk, got, want)
		}
	}
}

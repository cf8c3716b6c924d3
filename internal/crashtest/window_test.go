package crashtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
)

// A process killed the moment a campaign's send window closes, and
// brought back while it is closed: nothing is lost, nothing is sent while
// the window is closed, nothing is sent twice but the calls in flight at
// the kill, and the campaign finishes after the window opens again (a
// window closed 4 s a day, across midnight: from 4 s after the close to
// the close).
func TestKilledWhileTheWindowCloses(t *testing.T) {
	if os.Getenv("CRASH") == "" {
		t.Skip("kills campaignd as a send window closes: run it with `make crash` (CRASH=1)")
	}
	const n = 400_000 // 8 s at 500 calls/s
	var aud bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&aud, "w-%07d\n", (i*7919)%n)
	}
	sim, closes, opens, before := killAtTheClose(t, "window", &aud, n, "")
	inGap, resent := 0, 0
	for i := 0; i < n; i++ {
		ps := sim.Sim().Pushes(fmt.Sprintf("w-%07d", i))
		if len(ps) == 0 {
			t.Fatalf("w-%07d never pushed", i)
		}
		resent += len(ps) - 1
		for _, p := range ps {
			if p.At.After(closes.Add(10*time.Millisecond)) && p.At.Before(opens) {
				inGap++
			}
		}
	}
	stats := sim.Sim().Stats()
	t.Logf("%d pushes before the kill; %d sent twice; %d while the window was closed; violations %d", before, resent, inGap, stats.Violations)
	if inGap > 0 || stats.Violations != 0 {
		t.Fatalf("%d pushes while the window was closed, %d violations", inGap, stats.Violations)
	}
	if limit := 4 * concurrency * 100; resent > limit {
		t.Fatalf("%d targets sent twice, more than the %d that can be in flight at a kill", resent, limit)
	}
}

// The same with local time: half the targets in UTC, whose window closes
// for 4 s, half an hour east (Etc/GMT-1, UTC+1), whose window stays open
// (it closed for its 4 s an hour ago). A process killed as UTC's window
// closes, back while it is closed: nothing of UTC's is sent while it is
// closed, the other zone's go on meanwhile, nothing is lost, nothing is
// sent twice but the calls in flight at the kill.
func TestKilledWhileALocalWindowCloses(t *testing.T) {
	if os.Getenv("CRASH") == "" {
		t.Skip("kills campaignd as a zone's send window closes: run it with `make crash` (CRASH=1)")
	}
	const n = 400_000 // 8 s at 500 calls/s
	zoneOf := func(i int) string { return []string{"UTC", "Etc/GMT-1"}[i%2] }
	var aud bytes.Buffer
	for i := 0; i < n; i++ {
		k := (i * 7919) % n
		fmt.Fprintf(&aud, "l-%07d,%s\n", k, zoneOf(k))
	}
	sim, closes, opens, before := killAtTheClose(t, "local", &aud, n, `,"local_time":true`)
	inGap, othersInGap, resent := 0, 0, 0
	for i := 0; i < n; i++ {
		ps := sim.Sim().Pushes(fmt.Sprintf("l-%07d", i))
		if len(ps) == 0 {
			t.Fatalf("l-%07d never pushed", i)
		}
		resent += len(ps) - 1
		for _, p := range ps {
			if p.At.After(closes.Add(10*time.Millisecond)) && p.At.Before(opens) {
				if zoneOf(i) == "UTC" {
					inGap++
				} else {
					othersInGap++
				}
			}
		}
	}
	stats := sim.Sim().Stats()
	t.Logf("%d pushes before the kill; %d sent twice; %d of UTC while its window was closed, %d of Etc/GMT-1 meanwhile; violations %d",
		before, resent, inGap, othersInGap, stats.Violations)
	if inGap > 0 || stats.Violations != 0 {
		t.Fatalf("%d pushes of UTC while its window was closed, %d violations", inGap, stats.Violations)
	}
	if othersInGap == 0 {
		t.Errorf("nothing of Etc/GMT-1 went while UTC's window was closed")
	}
	if limit := 4 * concurrency * 100; resent > limit {
		t.Fatalf("%d targets sent twice, more than the %d that can be in flight at a kill", resent, limit)
	}
}

// killAtTheClose runs the send-window crash: on two campaignd processes,
// campaign id sends aud (n targets, as an audience object of that name)
// inside a window, UTC times of day, closed 4 s a day from 5 s ahead
// (window adds to send_window's fields); process 0 is killed as the
// window closes and started again 2 s later, while it is closed. It
// returns once the campaign completed with n sent: pushsim, the close,
// the opening, and the pushes before the kill.
func killAtTheClose(t *testing.T, id string, aud io.Reader, n int64, window string) (sim *pushsim.Server, closes, opens time.Time, before int) {
	t.Helper()
	c, sim, js, _ := setup(t, fmt.Sprintf("worker: {concurrency: %d}", concurrency))
	ctx := context.Background()
	if err := intake.UploadAudience(ctx, js, "audiences", id, aud); err != nil {
		t.Fatal(err)
	}
	closes = time.Now().Truncate(time.Second).Add(5 * time.Second)
	opens = closes.Add(4 * time.Second)
	body := fmt.Sprintf(`{"id":%q,"kind":"batch_push","push_message":{"title":"t","content":"c"},"audience":{"bucket":"audiences","object":%q},"send_window":{"from":%q,"to":%q,"timezone":"UTC"%s}}`,
		id, id, opens.UTC().Format("15:04:05"), closes.UTC().Format("15:04:05"), window)
	if _, err := js.Publish(ctx, intake.SubjectSubmit, []byte(body)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(closes.Add(-20 * time.Millisecond))) // the kill comes as the window closes
	c.procs[0].Kill()
	before = sim.Sim().Stats().TotalPushes
	t.Logf("%s killed process 0 at the close, %d pushes so far", time.Now().Format(time.StampMicro), before)
	time.Sleep(time.Until(closes.Add(2 * time.Second)))
	c.start(t, 0) // back while the window is closed
	st := testenv.WaitFor(t, 2*time.Minute, "the campaign to finish", func() (campaigns.Status, bool) {
		st, ok := c.status(id)
		return st, ok && st.Status.Final()
	})
	if st.Status != campaigns.StateCompleted || st.Sent != n {
		t.Fatalf("ended %+v", st)
	}
	return sim, closes, opens, before
}

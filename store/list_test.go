package store

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
)

type listed struct {
	id string
	ms int64
}

// seed stores n campaigns on a fake clock that moves 1 ms after every
// third one, and holds still for a run of 20 in the middle, so many
// submissions share a millisecond. The ids mix cases, digits, '-' and '_'
// (ordered bytewise by Redis). It returns them newest first, as List
// must: submission descending, then id descending.
func seed(t *testing.T, s *Store, fake *clock.Fake, n int) []listed {
	t.Helper()
	ctx := context.Background()
	prefixes := []string{"c-", "C_", "b", "z-9", "Z"}
	var all []listed
	for i := range n {
		id := fmt.Sprintf("%s%03d", prefixes[i%len(prefixes)], i)
		if _, _, err := s.Create(ctx, camp(id), fake.Now()); err != nil {
			t.Fatal(err)
		}
		all = append(all, listed{id, fake.Now().UnixMilli()})
		if i%3 == 2 && (i < 100 || i >= 120) {
			fake.Advance(time.Millisecond)
		}
	}
	slices.SortFunc(all, func(a, b listed) int {
		if c := cmp.Compare(b.ms, a.ms); c != 0 {
			return c
		}
		return cmp.Compare(b.id, a.id)
	})
	return all
}

// pageAll pages through q with its limit, between pages calling between
// (if set) with the page just read, and returns the ids in order.
func pageAll(t *testing.T, s *Store, q ListQuery, between func(page []campaigns.Status)) []string {
	t.Helper()
	var got []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		page, next, err := s.List(context.Background(), q)
		if err != nil {
			t.Fatalf("list %+v: %v", q, err)
		}
		if next != "" && len(page) != q.Limit {
			t.Fatalf("page %d holds %d campaigns, want %d (not the last page)", pages, len(page), q.Limit)
		}
		for _, st := range page {
			if q.Status != "" && st.Status != q.Status {
				t.Fatalf("%s is %s, listed under %s", st.ID, st.Status, q.Status)
			}
			got = append(got, st.ID)
		}
		if next == "" {
			return got
		}
		if between != nil {
			between(page)
		}
		q.Cursor = next
	}
}

func ids(ls []listed) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.id
	}
	return out
}

func TestListPagesEveryCampaignOnceNewestFirst(t *testing.T) {
	t.Parallel()
	fake := clock.NewFake(testenv.Date(2026, 12, 1, 1, 0, 0, 0))
	s := New(testenv.StartRedis(t).Client(t), Options{Clock: fake})
	all := seed(t, s, fake, 250)
	for _, limit := range []int{7, 1, 250, 500} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			got := pageAll(t, s, ListQuery{Limit: limit}, nil)
			if want := ids(all); !slices.Equal(got, want) {
				t.Fatalf("listed %d campaigns:\n%v\nwant %d, newest first:\n%v", len(got), got, len(want), want)
			}
		})
	}
	page, next, err := s.List(context.Background(), ListQuery{})
	if err != nil || len(page) != DefaultListLimit || next == "" {
		t.Fatalf("default page: %d campaigns, next %q, %v; want %d and a next", len(page), next, err, DefaultListLimit)
	}
}

func TestListFiltersByState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := clock.NewFake(testenv.Date(2026, 12, 1, 1, 0, 0, 0))
	s := New(testenv.StartRedis(t).Client(t), Options{Clock: fake})
	all := seed(t, s, fake, 250)
	want := map[campaigns.State][]string{}
	for i, l := range all {
		st := campaigns.StateAccepted
		switch i % 4 {
		case 1:
			st = campaigns.StateRunning
		case 2:
			st = campaigns.StateCompleted
		}
		if st != campaigns.StateAccepted {
			if _, _, err := s.Transition(ctx, l.id, st); err != nil {
				t.Fatal(err)
			}
		}
		want[st] = append(want[st], l.id)
	}
	for _, st := range campaigns.StoredStates() {
		t.Run(string(st), func(t *testing.T) {
			got := pageAll(t, s, ListQuery{Status: st, Limit: 7}, nil)
			if !slices.Equal(got, want[st]) {
				t.Fatalf("%s: listed %v, want %v", st, got, want[st])
			}
		})
	}
}

// Campaigns leaving the selection while it is paged (the last one of each
// page among them, so the cursor's own campaign is gone) skip nothing and
// repeat nothing of those that stay; a campaign whose keys vanished is left
// out.
func TestListCursorSurvivesChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := clock.NewFake(testenv.Date(2026, 12, 1, 1, 0, 0, 0))
	rdb := testenv.StartRedis(t).Client(t)
	s := New(rdb, Options{Clock: fake})
	all := seed(t, s, fake, 250)
	gone := map[string]bool{}
	got := pageAll(t, s, ListQuery{Status: campaigns.StateAccepted, Limit: 7}, func(page []campaigns.Status) {
		last := page[len(page)-1].ID
		if _, _, err := s.Transition(ctx, last, campaigns.StateRunning); err != nil {
			t.Fatal(err)
		}
		// And one further down, not listed yet: it must not be.
		pos := slices.IndexFunc(all, func(l listed) bool { return l.id == last })
		if pos+3 < len(all) {
			later := all[pos+3].id
			gone[later] = true
			if _, _, err := s.Transition(ctx, later, campaigns.StateCancelled); err != nil {
				t.Fatal(err)
			}
		}
	})
	var want []string
	for _, l := range all {
		if !gone[l.id] {
			want = append(want, l.id)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d:\n%v\nwant %d:\n%v", len(got), got, len(want), want)
	}

	// A campaign whose hash vanished (its keys expired before prune saw it).
	if err := rdb.Del(ctx, s.key(all[1].id)).Err(); err != nil {
		t.Fatal(err)
	}
	page, _, err := s.List(ctx, ListQuery{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if gotIDs := []string{page[0].ID, page[1].ID}; len(page) != 2 || !slices.Equal(gotIDs, []string{all[0].id, all[2].id}) {
		t.Fatalf("page %+v, want %s and %s", page, all[0].id, all[2].id)
	}
}

func TestListRejectsBadQueries(t *testing.T) {
	t.Parallel()
	s := setup(t)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name string
		q    ListQuery
		want error
	}{
		{"not base64", ListQuery{Cursor: "!!!"}, ErrBadCursor},
		{"no colon", ListQuery{Cursor: b64("1764550800000")}, ErrBadCursor},
		{"score not a number", ListQuery{Cursor: b64("soon:a")}, ErrBadCursor},
		{"negative score", ListQuery{Cursor: b64("-1:a")}, ErrBadCursor},
		{"bad id", ListQuery{Cursor: b64("1764550800000:not valid!")}, ErrBadCursor},
		{"empty id", ListQuery{Cursor: b64("1764550800000:")}, ErrBadCursor},
		{"unknown state", ListQuery{Status: "sleeping"}, ErrUnknownState},
		{"answer state", ListQuery{Status: campaigns.StateRejected}, ErrUnknownState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.List(context.Background(), tt.q)
			if !errors.Is(err, tt.want) {
				t.Fatalf("List(%+v) = %v, want %v", tt.q, err, tt.want)
			}
		})
	}
	// An empty store: an empty page, no next.
	page, next, err := s.List(context.Background(), ListQuery{})
	if err != nil || page == nil || len(page) != 0 || next != "" {
		t.Fatalf("empty store: %v %q %v", page, next, err)
	}
}

func TestFailurePage(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, camp("f"), time.Now()); err != nil {
		t.Fatal(err)
	}
	var fails []campaigns.Failure
	for i := range 25 {
		fails = append(fails, campaigns.Failure{Target: fmt.Sprintf("u%02d", i), Reason: "no such user"})
	}
	if _, _, _, err := s.RecordBatch(ctx, "f", 0, 0, fails, 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		offset, limit int64
		want          []campaigns.Failure
	}{
		{0, 10, fails[:10]},
		{20, 10, fails[20:]},
		{25, 10, []campaigns.Failure{}},
	}
	for _, tt := range tests {
		page, total, found, err := s.FailurePage(ctx, "f", tt.offset, tt.limit)
		if err != nil || !found || total != 25 || !slices.Equal(page, tt.want) {
			t.Fatalf("FailurePage(%d, %d) = %v, %d, %v, %v; want %v of 25", tt.offset, tt.limit, page, total, found, err, tt.want)
		}
	}
	if _, _, found, err := s.FailurePage(ctx, "nobody", 0, 10); found || err != nil {
		t.Fatalf("unknown campaign: found %v, %v", found, err)
	}
	if _, _, _, err := s.FailurePage(ctx, "f", -1, 10); err == nil {
		t.Fatal("a negative offset is accepted")
	}
}

package httpapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/campaignd/campaignd/campaigns"
)

// nextFires is how many fire times GET /api/schedules and the page show.
const nextFires = 3

// schedule is one recurring campaign of GET /api/schedules.
type schedule struct {
	Name     string      `json:"name"`
	Cron     string      `json:"cron"`
	Timezone string      `json:"timezone"`
	Next     []time.Time `json:"next"` // RFC 3339 in the schedule's zone
	Last     *lastTick   `json:"last,omitempty"`

	lastRead bool // Last.Status was read from the store (it may be absent)
}

// lastTick is a schedule's most recent fire time at or before now and
// the campaign it fires; Status is absent when that campaign is not
// stored (it was never fired, or its status expired).
type lastTick struct {
	ID     string          `json:"id"`
	At     time.Time       `json:"at"`
	Status campaigns.State `json:"status,omitempty"`
}

// schedulesBody is the answer of GET /api/schedules.
type schedulesBody struct {
	Schedules []schedule `json:"schedules"`
}

// readSchedules lists the schedules with the state of each last tick's
// campaign. On a store error it returns the schedules read so far, every
// status it could not read left empty, and the error.
func (s *Server) readSchedules(ctx context.Context) ([]schedule, error) {
	infos := s.o.Schedules(nextFires)
	out := make([]schedule, 0, len(infos))
	var firstErr error
	for _, in := range infos {
		sc := schedule{Name: in.Name, Cron: in.Spec, Timezone: in.Zone, Next: in.Next}
		if sc.Next == nil {
			sc.Next = []time.Time{}
		}
		if in.LastID != "" {
			sc.Last = &lastTick{ID: in.LastID, At: in.Last}
			if firstErr == nil {
				st, found, err := s.o.Status.Lookup(ctx, in.LastID)
				switch {
				case err != nil:
					firstErr = fmt.Errorf("status of %s (schedule %s): %w", in.LastID, in.Name, err)
				case found:
					sc.Last.Status = st.Status
				}
				sc.lastRead = err == nil
			}
		}
		out = append(out, sc)
	}
	return out, firstErr
}

func (s *Server) schedules(w http.ResponseWriter, r *http.Request) {
	if keys := slices.Sorted(maps.Keys(r.URL.Query())); len(keys) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": keys[0] + ": unknown parameter (this path takes none)"})
		return
	}
	list, err := s.readSchedules(r.Context())
	if err != nil {
		s.o.Logger.Warn().Err(err).Msg("schedules")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "status store unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, schedulesBody{Schedules: list})
}

// timeText is a time as the pages show it, and its machine form.
type timeText struct {
	Text, ISO string
}

// zoneTime shows t in its own zone (a schedule's), with the weekday a
// cron spec often names.
func zoneTime(t time.Time) timeText {
	return timeText{Text: t.Format("Mon 2006-01-02 15:04:05"), ISO: t.Format(time.RFC3339)}
}

// scheduleRow is one schedule on the campaigns page.
type scheduleRow struct {
	Name, Cron, Zone string
	Next             []timeText
	LastID, LastHref string
	LastAt           timeText
	LastState        string // "" when the campaign is not stored, or Unknown
	Unknown          bool   // the store did not answer for it
}

// scheduleRows reads the page's schedules section; a store error is
// logged and leaves the states unknown.
func (s *Server) scheduleRows(ctx context.Context) (rows []scheduleRow, final, storeErr bool) {
	list, err := s.readSchedules(ctx)
	if err != nil {
		s.o.Logger.Warn().Err(err).Msg("campaigns page: schedules")
	}
	final = true
	for _, sc := range list {
		row := scheduleRow{Name: sc.Name, Cron: sc.Cron, Zone: sc.Timezone}
		for _, t := range sc.Next {
			row.Next = append(row.Next, zoneTime(t))
		}
		if sc.Last != nil {
			row.LastID, row.LastAt, row.Unknown = sc.Last.ID, zoneTime(sc.Last.At), !sc.lastRead
			if sc.Last.Status != "" {
				row.LastState, row.LastHref = string(sc.Last.Status), campaignHref(sc.Last.ID)
				final = final && sc.Last.Status.Final()
			}
		}
		rows = append(rows, row)
	}
	return rows, final, err != nil
}

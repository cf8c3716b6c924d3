package httpapi

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/store"
)

// The pages for people under /campaigns/: server-rendered, one inline
// style sheet, no script, nothing fetched from elsewhere. html/template
// escapes everything a campaign carries (ids, reasons, errors).

//go:embed templates/*.html
var templateFS embed.FS

var (
	listTemplate   = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/list.html"))
	detailTemplate = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/detail.html"))
	errorTemplate  = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/error.html"))
)

// refreshSeconds is how often a page showing an unfinished campaign
// reloads itself.
const refreshSeconds = 3

// failuresPerPage is how many refused targets a detail page shows.
const failuresPerPage = 100

// page is what the layout shows around every page.
type page struct {
	Title     string
	Refresh   int  // seconds; 0: the page does not reload itself
	Schedules bool // the header links to the schedules on /campaigns/
}

// page starts the view of a page titled title.
func (s *Server) page(title string) page {
	return page{Title: title, Schedules: s.o.Schedules != nil}
}

type stateLink struct {
	Name    string
	Count   int64
	Href    string
	Current bool
}

// row is one campaign of the list, or the head of its detail page.
type row struct {
	ID, Href, Kind, State string
	Final                 bool
	Percent               int
	Sent, Failed          int64
	Start, StartISO       string
	ETA, ETAISO           string // when it is expected to end (not final, and something can be said)
	Pace                  string // its rate now and why it goes at that pace, in short
	TaskIDs               []string
	// NextOpening, NextOpeningISO: a local-time campaign's next zone to
	// open (its targets wait for their window).
	NextOpening, NextOpeningISO string
}

type listView struct {
	page
	States      []stateLink
	Status      string
	Rows        []row
	Newest      string // href of the first page, when this is a later one
	Next        string // href of the next page
	CountsError bool
	// The schedules, on the first page when Options.Schedules is set.
	ShowSchedules  bool
	ScheduleRows   []scheduleRow
	SchedulesError bool // the store did not answer: states unknown
}

type detailView struct {
	page
	row
	App, Priority        string
	TargetsTotal         int64
	BatchesDone          int64
	BatchesTotal         int64
	Dropped              int64
	At, AtISO            string
	ExpiresAt            string
	Errors               []campaigns.FieldError
	Throttled            []campaigns.Throttle
	Rates                []string // "push_single 4.93 calls/s", its rates now
	Outlook              []string // the forecast's notes: why it waits, what it shares
	Failures             []campaigns.Failure
	FailuresTotal        int64
	FailuresFirst        int64 // 1-based number of the first listed
	FailuresLast         int64
	FailuresPrev         string
	FailuresNext         string
	FailuresJSON         string
	Queue, QueueHref     string
	PlanTask, BatchTasks string
	PlanHref             string
}

type errorView struct {
	page
	Code    int
	Message string
}

func formatTime(t time.Time) (text, iso string) {
	if t.IsZero() {
		return "—", ""
	}
	t = t.UTC()
	return t.Format("2006-01-02 15:04:05 UTC"), t.Format(time.RFC3339)
}

// withOutlook shows a forecast's ETA, rates and notes.
func (v *detailView) withOutlook(fc *campaigns.Forecast) {
	v.row.withETA(fc)
	for _, g := range slices.Sorted(maps.Keys(fc.Rates)) {
		v.Rates = append(v.Rates, fmt.Sprintf("%s %s calls/s", g, strconv.FormatFloat(fc.Rates[g], 'f', -1, 64)))
	}
	v.Outlook = fc.Notes
}

// withETA shows a forecast's end, its rate and why it waits, in short.
func (r *row) withETA(fc *campaigns.Forecast) {
	if fc == nil {
		return
	}
	if fc.DoneAt != nil {
		r.ETA, r.ETAISO = formatTime(*fc.DoneAt)
	}
	var parts []string
	for _, g := range slices.Sorted(maps.Keys(fc.Rates)) {
		parts = append(parts, fmt.Sprintf("%s/s on %s", strconv.FormatFloat(fc.Rates[g], 'f', -1, 64), g))
	}
	parts = append(parts, fc.Notes...)
	r.Pace = strings.Join(parts, "; ")
}

func campaignHref(id string) string { return "/campaigns/" + url.PathEscape(id) }

func rowOf(st campaigns.Status) row {
	r := row{
		ID: st.ID, Href: campaignHref(st.ID), Kind: string(st.Kind), State: string(st.Status),
		Final: st.Status.Final(), Percent: int(st.Progress() * 100),
		Sent: st.Sent, Failed: st.Failed, TaskIDs: st.ProviderTaskIDs,
	}
	r.Start, r.StartISO = "—", ""
	if st.StartAt != nil {
		r.Start, r.StartISO = formatTime(*st.StartAt)
	}
	if st.NextOpening != nil && !r.Final {
		r.NextOpening, r.NextOpeningISO = formatTime(*st.NextOpening)
	}
	if r.Kind == "" {
		r.Kind = "—"
	}
	return r
}

// listHref is the list page for a state (all when empty), from a cursor.
func listHref(status campaigns.State, limit int, cursor string) string {
	v := url.Values{}
	if status != "" {
		v.Set("status", string(status))
	}
	if limit != store.DefaultListLimit {
		v.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if len(v) == 0 {
		return "/campaigns/"
	}
	return "/campaigns/?" + v.Encode()
}

// render writes a template into a buffer first, so that a failing
// template answers 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, code int, t *template.Template, v any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		s.o.Logger.Error().Err(err).Str("template", t.Name()).Msg("render page")
		http.Error(w, "page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) errorPage(w http.ResponseWriter, code int, msg string) {
	s.render(w, code, errorTemplate, errorView{page: s.page(http.StatusText(code)), Code: code, Message: msg})
}

func (s *Server) listPage(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, err.Error())
		return
	}
	list, next, err := s.listCampaigns(r.Context(), q)
	var pe *paramError
	switch {
	case errors.As(err, &pe):
		s.errorPage(w, http.StatusBadRequest, pe.Error())
		return
	case err != nil:
		s.o.Logger.Warn().Err(err).Msg("campaigns page")
		s.errorPage(w, http.StatusServiceUnavailable, "The campaign store (Redis) did not answer. Try again in a moment.")
		return
	}
	v := listView{page: s.page("Campaigns"), Status: string(q.Status)}
	counts, err := s.o.Campaigns.CountByState(r.Context())
	if err != nil {
		s.o.Logger.Warn().Err(err).Msg("campaigns page: counts")
		v.CountsError = true
	}
	var all int64
	for _, st := range campaigns.StoredStates() {
		all += counts[st]
		v.States = append(v.States, stateLink{Name: string(st), Count: counts[st], Href: listHref(st, q.Limit, ""), Current: q.Status == st})
	}
	v.States = append([]stateLink{{Name: "all", Count: all, Href: listHref("", q.Limit, ""), Current: q.Status == ""}}, v.States...)
	for _, st := range list {
		rw := rowOf(st)
		if !rw.Final {
			v.Refresh = refreshSeconds
			if s.o.Forecast != nil {
				if c, err := s.o.Campaigns.Campaign(r.Context(), st.ID); err == nil {
					rw.withETA(s.outlook(r.Context(), c, st))
				}
			}
		}
		v.Rows = append(v.Rows, rw)
	}
	if q.Cursor != "" {
		v.Newest = listHref(q.Status, q.Limit, "")
	}
	if next != "" {
		v.Next = listHref(q.Status, q.Limit, next)
	}
	if s.o.Schedules != nil && q.Cursor == "" {
		var final bool
		v.ShowSchedules = true
		v.ScheduleRows, final, v.SchedulesError = s.scheduleRows(r.Context())
		if !final {
			v.Refresh = refreshSeconds
		}
	}
	s.render(w, http.StatusOK, listTemplate, v)
}

func (s *Server) detailPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !campaigns.ValidID(id) {
		s.errorPage(w, http.StatusBadRequest, "A campaign id matches [A-Za-z0-9_-]{1,128}.")
		return
	}
	offset := int64(0)
	if f := r.URL.Query().Get("failures"); f != "" {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			s.errorPage(w, http.StatusBadRequest, "failures: must be a whole number ≥ 0 (the first refused target to show)")
			return
		}
		offset = n
	}
	ctx := r.Context()
	st, found, err := s.o.Status.Lookup(ctx, id)
	var c *campaigns.Campaign
	if err == nil && found {
		c, err = s.o.Campaigns.Campaign(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			found, err = false, nil // expired between the two reads
		}
	}
	var fails []campaigns.Failure
	var total int64
	if err == nil && found {
		fails, total, found, err = s.o.Campaigns.FailurePage(ctx, id, offset, failuresPerPage)
	}
	switch {
	case err != nil:
		s.o.Logger.Warn().Err(err).Str("campaign", id).Msg("campaign page")
		s.errorPage(w, http.StatusServiceUnavailable, "The campaign store (Redis) did not answer. Try again in a moment.")
		return
	case !found:
		s.errorPage(w, http.StatusNotFound, fmt.Sprintf("No campaign %s is stored: it was never submitted, or it ended long enough ago that its status expired.", id))
		return
	}
	v := detailView{
		page: s.page("Campaign " + id), row: rowOf(st),
		App: c.App, Priority: string(c.Priority),
		TargetsTotal: st.TargetsTotal, BatchesDone: st.BatchesDone, BatchesTotal: st.BatchesTotal, Dropped: st.Dropped,
		Errors: st.Errors, Failures: fails, FailuresTotal: total,
		FailuresJSON: "/api/campaigns/" + url.PathEscape(id) + "/failures",
		PlanTask:     id + ":plan", BatchTasks: id + ":g:<k>",
	}
	if v.App == "" {
		v.App = "default"
	}
	if v.Priority == "" {
		v.Priority = string(campaigns.PriorityNormal)
	}
	if !v.Final {
		v.Refresh = refreshSeconds
		v.Throttled = s.throttled(ctx, c.App, st)
		if fc := s.outlook(ctx, c, st); fc != nil {
			v.withOutlook(fc)
		}
	}
	v.At, v.AtISO = formatTime(st.At)
	if c.ExpiresAt != nil {
		v.ExpiresAt, _ = formatTime(*c.ExpiresAt)
	}
	if len(fails) > 0 {
		v.FailuresFirst, v.FailuresLast = offset+1, offset+int64(len(fails))
	}
	self := campaignHref(id)
	if offset > 0 {
		prev := max(offset-failuresPerPage, 0)
		v.FailuresPrev = self
		if prev > 0 {
			v.FailuresPrev += "?failures=" + strconv.FormatInt(prev, 10)
		}
	}
	if offset+int64(len(fails)) < total {
		v.FailuresNext = self + "?failures=" + strconv.FormatInt(offset+int64(len(fails)), 10)
	}
	if s.o.QueueFor != nil {
		v.Queue = s.o.QueueFor(c.Priority)
		v.QueueHref = "/monitoring/queues/" + url.PathEscape(v.Queue)
		v.PlanHref = v.QueueHref + "/tasks/" + url.PathEscape(v.PlanTask)
	} else {
		v.QueueHref = "/monitoring/"
	}
	s.render(w, http.StatusOK, detailTemplate, v)
}

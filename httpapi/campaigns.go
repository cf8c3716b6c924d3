package httpapi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/store"
)

// Lister lists campaigns and reads what their pages show (store.Store).
type Lister interface {
	// List returns a page of campaigns, newest first, and the cursor of
	// the next page ("" on the last); a cursor it did not make is an error
	// wrapping store.ErrBadCursor.
	List(ctx context.Context, q store.ListQuery) ([]campaigns.Status, string, error)
	// CountByState counts the stored campaigns in each state.
	CountByState(ctx context.Context) (map[campaigns.State]int64, error)
	// Campaign returns the campaign as submitted (an error wrapping
	// store.ErrNotFound for an unknown id).
	Campaign(ctx context.Context, id string) (*campaigns.Campaign, error)
	// FailurePage returns refused targets offset..offset+limit-1 and how
	// many there are; found is false for an unknown campaign.
	FailurePage(ctx context.Context, id string, offset, limit int64) ([]campaigns.Failure, int64, bool, error)
}

// listParams are the query parameters of GET /api/campaigns and
// /campaigns/.
var listParams = []string{"status", "limit", "cursor"}

// paramError is a bad query parameter: the 400 answer names it.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return e.param + ": " + e.msg }

// parseListQuery reads status, limit and cursor. Any other parameter, or
// one given twice, is an error too (a misspelt filter would otherwise list
// everything). The cursor is checked by the store.
func parseListQuery(v url.Values) (store.ListQuery, error) {
	q := store.ListQuery{Limit: store.DefaultListLimit}
	for _, k := range slices.Sorted(maps.Keys(v)) {
		if !slices.Contains(listParams, k) {
			return q, &paramError{k, "unknown parameter (known: " + strings.Join(listParams, ", ") + ")"}
		}
		if len(v[k]) > 1 {
			return q, &paramError{k, "given more than once"}
		}
	}
	if st := v.Get("status"); st != "" {
		if !slices.Contains(campaigns.StoredStates(), campaigns.State(st)) {
			return q, &paramError{"status", "must be one of " + stateNames()}
		}
		q.Status = campaigns.State(st)
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxListLimit {
			return q, &paramError{"limit", fmt.Sprintf("must be 1..%d", store.MaxListLimit)}
		}
		q.Limit = n
	}
	q.Cursor = v.Get("cursor")
	return q, nil
}

func stateNames() string {
	names := make([]string, 0, len(campaigns.StoredStates()))
	for _, st := range campaigns.StoredStates() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

// errBadCursor is the 400 answer for a cursor the store refused.
var errBadCursor = &paramError{"cursor", "not a cursor from this API (start again without one)"}

// listCampaigns reads a page for q: a paramError for a bad cursor, an
// error of the store otherwise.
func (s *Server) listCampaigns(ctx context.Context, q store.ListQuery) ([]campaigns.Status, string, error) {
	page, next, err := s.o.Campaigns.List(ctx, q)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", errBadCursor
	}
	if err != nil {
		return nil, "", fmt.Errorf("list campaigns %+v: %w", q, err)
	}
	return page, next, nil
}

// listBody is the answer of GET /api/campaigns (docs/interface.md §6).
type listBody struct {
	Campaigns []campaigns.Status `json:"campaigns"`
	Next      string             `json:"next,omitempty"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	page, next, err := s.listCampaigns(r.Context(), q)
	var pe *paramError
	switch {
	case errors.As(err, &pe):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": pe.Error()})
		return
	case err != nil:
		s.o.Logger.Warn().Err(err).Msg("campaign list")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "status store unavailable"})
		return
	}
	if page == nil {
		page = []campaigns.Status{}
	}
	writeJSON(w, http.StatusOK, listBody{Campaigns: page, Next: next})
}

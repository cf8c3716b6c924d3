package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/campaignd/campaignd/campaigns"
)

// forecast answers POST /api/forecast: the body is a campaign JSON, the
// answer the forecast JSON (docs/interface.md §7); 400 with the errors
// intake would give for a campaign it would reject. ?audience_targets=N
// gives the audience's count instead of reading the object (campaignctl
// counts a local file), and ?audience_zones={"Asia/Tokyo":N,…} a
// local-time campaign's count by zone.
func (s *Server) forecast(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, campaigns.MaxMessageBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "a campaign is at most " + strconv.Itoa(campaigns.MaxMessageBytes) + " bytes"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the body: " + err.Error()})
		return
	}
	given := campaigns.NotCounted
	if v := r.URL.Query().Get("audience_targets"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "audience_targets: want a count (0 or more)"})
			return
		}
		given.Targets = n
	}
	if v := r.URL.Query().Get("audience_zones"); v != "" {
		if given.Zones = campaigns.ParseZoneCounts(v); given.Zones == nil || given.Targets < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `audience_zones: want {"Zone": count, …} (0 or more each), with audience_targets`})
			return
		}
	}
	fc, err := s.o.Forecast.Forecast(r.Context(), body, given)
	if err != nil {
		s.o.Logger.Warn().Err(err).Msg("forecast failed")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "forecast: " + err.Error()})
		return
	}
	code := http.StatusOK
	if fc.Status == string(campaigns.StateRejected) {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, fc)
}

package campaigns

import (
	"encoding/json"
	"time"
)

// Forecast is the answer of campaigns.forecast and POST /api/forecast
// (docs/interface.md §7): when a campaign would start and end, what it
// would spend, what goes before it or shares its rate, what it would drop.
type Forecast struct {
	ID           string           `json:"id"`
	App          string           `json:"app"`
	Kind         Kind             `json:"kind"`
	Status       string           `json:"status"` // ForecastOK or "rejected"
	TargetsTotal int64            `json:"targets_total"`
	Calls        map[string]int64 `json:"calls"`              // provider calls per limit group
	StartAt      *time.Time       `json:"start_at,omitempty"` // its first call (task kinds: the task's creation)
	DoneAt       *time.Time       `json:"done_at,omitempty"`  // its last call
	Ahead        Ahead            `json:"ahead"`
	Dropped      int64            `json:"dropped"` // targets that would miss expires_at
	Notes        []string         `json:"notes"`
	// Rates are the calls/s it is expected to get per group at its start
	// (an addition).
	Rates  map[string]float64 `json:"rates,omitempty"`
	Errors []FieldError       `json:"errors,omitempty"` // why it would be rejected
}

// Counted is a campaign's audience as counted by whoever asks for its
// forecast (campaignctl counts a local file), instead of campaignd
// reading the object.
type Counted struct {
	Targets int64 // its distinct valid targets; below 0: not counted (campaignd reads the object)
	// Zones, for a local-time campaign, is how many of them each zone has
	// ("": the window's zone); nil: not told (all in the window's zone).
	Zones map[string]int64
}

// NotCounted is a Counted that leaves the count to campaignd.
var NotCounted = Counted{Targets: -1}

// ParseZoneCounts reads intake's HeaderAudienceZones (or POST /api/forecast's
// audience_zones): zone → targets. Anything else, negative counts
// included, is nil (not told).
func ParseZoneCounts(v string) map[string]int64 {
	if v == "" {
		return nil
	}
	var m map[string]int64
	if json.Unmarshal([]byte(v), &m) != nil {
		return nil
	}
	for _, n := range m {
		if n < 0 {
			return nil
		}
	}
	return m
}

// ForecastOK is a forecast's status when the campaign would be taken.
const ForecastOK = "ok"

// Ahead is the work that goes before a campaign or shares its rate.
type Ahead struct {
	Campaigns int              `json:"campaigns"`
	Calls     map[string]int64 `json:"calls"`
}

// MarshalJSON writes a rejected forecast as {"status": "rejected",
// "errors": […]} (with its id when it has one), and any other whole.
func (f Forecast) MarshalJSON() ([]byte, error) {
	if f.Status == string(StateRejected) {
		return json.Marshal(struct {
			ID     string       `json:"id,omitempty"`
			Status string       `json:"status"`
			Errors []FieldError `json:"errors"`
		}{f.ID, f.Status, f.Errors})
	}
	type plain Forecast
	p := plain(f)
	if p.Calls == nil {
		p.Calls = map[string]int64{}
	}
	if p.Ahead.Calls == nil {
		p.Ahead.Calls = map[string]int64{}
	}
	if p.Notes == nil {
		p.Notes = []string{}
	}
	return json.Marshal(p)
}

// Check reads a campaign as intake does (its id, its JSON, defaults, every
// rule of env) and returns it, or every problem intake would reject it
// for.
func Check(data []byte, env Env) (*Campaign, FieldErrors) {
	if _, errs := PeekID(data); len(errs) > 0 {
		return nil, errs
	}
	c, errs := Decode(data)
	if len(errs) > 0 {
		return c, errs
	}
	c.Normalize()
	if errs := c.Validate(env); len(errs) > 0 {
		return c, errs
	}
	return c, nil
}

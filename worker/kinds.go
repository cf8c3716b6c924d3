package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// A kind is everything campaignd knows about one campaign kind, in one
// place: what a unit of work is (how many targets one stored batch — one
// call, or one target's calls — carries), which limit groups its calls
// spend, how a unit is sent and how the answer becomes per-target results.
// The rest of the pipeline (dedupe, deterministic TaskIDs, record-once,
// progress and status, pause/resume/cancel, expiry, start dates, priority,
// a campaign's own rate_limit, audiences, failures) is shared by every kind.
//
// Each kind lives in its own file (kind_*.go) and is listed once in
// kindList; intake accepts exactly the kinds listed there (Kinds).
type kind struct {
	name campaigns.Kind
	// rules are the kind's payload and where it runs: the app providers
	// that can run it, the payload fields it reads and their validation
	// (intake and the config check every campaign by them).
	rules campaigns.KindRules
	// groups are the limit groups (docs/interface.md §2.3) its calls spend.
	groups []provider.Group
	// unit is how many targets one unit of work carries, for an app of the
	// given provider.
	unit func(providerName string) int
	// unitTarget, for kinds without targets (a template), names the single
	// unit the campaign is made of; nil for kinds that read targets or an
	// audience.
	unitTarget func(c *campaigns.Campaign) string
	// prepare, if set, runs once before planning (e.g. create a missing
	// label). A *campaignFailure fails the campaign with nothing sent.
	prepare func(ctx context.Context, c *campaigns.Campaign) error
	// send sends one unit and returns a result per target, which it may
	// put in buf's storage (buf[:0]); the returned slice is the worker's
	// afterwards (recycled for a later unit). An error means the whole unit
	// failed (and is classified as every batch error is).
	send func(ctx context.Context, c *campaigns.Campaign, targets []string, buf []TargetResult) ([]TargetResult, error)
	// task, for the kinds that create one provider push task (label_push,
	// broadcast), replaces planning and sending: the campaign waits in the
	// app's task queue for the task-window caps (dispatcher.go).
	task *taskSpec
	// calls, if set, counts the provider calls units of work make, per
	// limit group (for the forecast); nil: one call per unit on the
	// kind's first group.
	calls func(c *campaigns.Campaign, providerName string, units int64) map[provider.Group]int64
}

// taskSpec is how a task kind creates its provider task.
type taskSpec struct {
	broadcast bool // holds its running slot for the whole window
	create    func(ctx context.Context, c *campaigns.Campaign) (taskID string, err error)
}

// kindList is the one list of the kinds this campaignd sends, each given
// only the part of the providers it declares in its file (p may be nil
// when only the kinds' descriptions are wanted: nothing is called then).
func kindList(p Providers) []kind {
	return []kind{batchPushKind(p), singlePushKind(p), labelPushKind(p), broadcastKind(p), labelMembersKind(p), userSettingsKind(p), templateKind(p)}
}

// Providers is what the kinds need of the provider clients, all together;
// each kind's file declares the part it uses, and the kind is given only
// that part (kindList).
type Providers interface {
	// ProviderOf names the provider of a configured app ("easemob",
	// "engagelab"), or "" for an unknown app.
	ProviderOf(app string) string
	Pusher
	SyncPusher
	LabelEditor
	TagEditor
	SettingsEditor
	TemplateEditor
	TaskCreator
}

// Kinds returns the kinds this campaignd sends with their rules, for
// intake and config validation (campaigns.Env.Kinds): a kind is accepted
// exactly when it is handled, and its payload is checked by its own
// rules.
func Kinds() map[campaigns.Kind]campaigns.KindRules {
	out := map[campaigns.Kind]campaigns.KindRules{}
	for _, k := range kindList(nil) {
		out[k.name] = k.rules
	}
	return out
}

// KindInfo describes a handled kind (for documentation and metrics).
type KindInfo struct {
	Kind      campaigns.Kind
	Providers []string
	Groups    []provider.Group
	Unit      map[string]int // provider → targets per unit of work
}

// KindInfos lists the handled kinds in contract order.
func KindInfos() []KindInfo {
	var out []KindInfo
	for _, k := range kindList(nil) {
		ki := KindInfo{Kind: k.name, Providers: k.rules.Providers, Groups: k.groups, Unit: map[string]int{}}
		for _, p := range k.rules.Providers {
			ki.Unit[p] = k.unit(p)
		}
		out = append(out, ki)
	}
	order := map[campaigns.Kind]int{}
	for i, k := range campaigns.Kinds {
		order[k] = i
	}
	sort.Slice(out, func(i, j int) bool { return order[out[i].Kind] < order[out[j].Kind] })
	return out
}

// Calls counts the provider calls a campaign of targets distinct targets
// makes, per limit group, for an app of providerName (the forecast's
// count; retries not included). Task kinds and templates make one unit
// whatever their targets.
func Calls(c *campaigns.Campaign, providerName string, targets int64) map[provider.Group]int64 {
	for _, k := range kindList(nil) {
		if k.name != c.Kind {
			continue
		}
		units := int64(1)
		if k.task == nil && k.unitTarget == nil {
			u := int64(k.unit(providerName))
			units = (targets + u - 1) / u
		}
		if k.calls != nil {
			return k.calls(c, providerName, units)
		}
		if units == 0 {
			return map[provider.Group]int64{}
		}
		return map[provider.Group]int64{k.groups[0]: units}
	}
	return nil
}

// kindSet is the kinds this Worker sends, each given its part of the
// providers.
type kindSet struct {
	m    map[campaigns.Kind]*kind
	prov Providers
}

func newKindSet(p Providers) kindSet {
	m := map[campaigns.Kind]*kind{}
	for _, k := range kindList(p) {
		m[k.name] = &k
	}
	return kindSet{m: m, prov: p}
}

// of returns the kind of a campaign, and the unit size for its app.
func (ks kindSet) of(c *campaigns.Campaign) (*kind, int, error) {
	k, ok := ks.m[c.Kind]
	if !ok {
		return nil, 0, fmt.Errorf("campaign %s: kind %q is not handled by this campaignd", c.ID, c.Kind)
	}
	prov := ks.prov.ProviderOf(c.App)
	for _, p := range k.rules.Providers {
		if p == prov {
			return k, max(k.unit(prov), 1), nil
		}
	}
	return nil, 0, fmt.Errorf("campaign %s: kind %s is not available on app %q (provider %q)", c.ID, c.Kind, c.App, prov)
}

// task returns the kind of a task campaign (label_push, broadcast); nil
// for other kinds.
func (ks kindSet) task(c *campaigns.Campaign) *kind {
	if k, ok := ks.m[c.Kind]; ok && k.task != nil {
		return k
	}
	return nil
}

// campaignFailure fails a whole campaign before anything is sent (a label
// that does not exist, the app's label cap): the campaign ends failed with
// the error on its status.
type campaignFailure struct {
	field, message string
}

func (e *campaignFailure) Error() string { return e.field + ": " + e.message }

// fixed returns a unit size function that ignores the provider.
func fixed(n int) func(string) int { return func(string) int { return n } }

// allOK is the result of a unit the provider accepted as a whole.
func allOK(targets []string) []TargetResult {
	out := make([]TargetResult, len(targets))
	for i, t := range targets {
		out[i] = TargetResult{ID: t, OK: true}
	}
	return out
}

// isPermanent reports whether repeating a failed call cannot help: the
// provider refused it as wrong, refused the credentials, or the client
// refused the input before sending.
func isPermanent(err error) bool {
	if _, later := asRetryLater(err); later {
		return false
	}
	var fe provider.FieldErrors
	if errors.As(err, &fe) {
		return true
	}
	k, ok := provider.ClassOf(err)
	return ok && (k == provider.ClassPermanent || k == provider.ClassAuth)
}

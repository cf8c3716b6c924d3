package provider

// Group names an endpoint group that shares one calls-per-second budget per
// app. The names are the keys of `limits` in the config (docs/interface.md §2.3).
type Group string

// Endpoint groups.
const (
	GroupPushSingle   Group = "push_single"  // POST /push/single
	GroupPushSync     Group = "push_sync"    // POST /push/sync/{target}
	GroupPushAsync    Group = "push_async"   // POST /push/async/{target}
	GroupPushLabel    Group = "push_label"   // POST /push/list/label
	GroupPushTask     Group = "push_task"    // POST /push/task
	GroupLabel        Group = "label"        // label create/get/list/delete
	GroupLabelUser    Group = "label_user"   // label member add/get/list/remove
	GroupUser         Group = "user"         // PUT /users/{u} (nickname, display style, DND)
	GroupNotification Group = "notification" // notification mode + language
	GroupTemplate     Group = "template"     // push templates
	GroupTags         Group = "tags"         // every EngageLab device/tag/alias call
	GroupToken        Group = "token"        // POST /token (app token fetches)
)

// Groups lists the configurable groups in config order.
var Groups = []Group{GroupPushSingle, GroupPushSync, GroupPushAsync, GroupPushLabel, GroupPushTask,
	GroupLabel, GroupLabelUser, GroupUser, GroupNotification, GroupTemplate, GroupTags, GroupToken}

// DefaultLimits are the provider's published per-App-Key limits, calls/s.
// The token endpoint has no published limit: 2/s is campaignd's own
// bound, so that a burst of refusals (a revoked token, many processes
// starting at once) cannot turn into a burst of token requests.
var DefaultLimits = map[Group]float64{
	GroupPushSingle: 10, GroupPushSync: 1, GroupPushAsync: 200, GroupPushLabel: 10, GroupPushTask: 1,
	GroupLabel: 10, GroupLabelUser: 30, GroupUser: 100, GroupNotification: 100, GroupTemplate: 100, GroupTags: 50,
	GroupToken: 2,
}

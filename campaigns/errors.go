package campaigns

import (
	"errors"

	"github.com/campaignd/campaignd/provider"
)

// FieldError is one invalid field of a campaign, named as in its JSON.
type FieldError = provider.FieldError

// FieldErrors lists every problem of a campaign.
type FieldErrors = provider.FieldErrors

// ErrAudienceNotFound is wrapped by an audience source's error when the
// audience's bucket or object does not exist: the campaign cannot be
// planned, and retrying will not help.
var ErrAudienceNotFound = errors.New("audience not found")

// ErrAudienceDenied is wrapped by an audience source's error when
// campaignd may not read the audience's bucket (its NATS permissions do
// not allow it): the campaign fails, as for a missing audience, rather
// than wait for an answer that never comes.
var ErrAudienceDenied = errors.New("campaignd may not read this audience bucket")

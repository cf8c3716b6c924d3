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

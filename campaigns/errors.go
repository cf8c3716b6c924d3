package campaigns

import "github.com/campaignd/campaignd/provider"

// FieldError is one invalid field of a campaign, named as in its JSON.
type FieldError = provider.FieldError

// FieldErrors lists every problem of a campaign.
type FieldErrors = provider.FieldErrors

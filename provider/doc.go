// Package provider holds what the provider clients share: one error model
// the worker can act on (rate-limited, transient, auth, permanent), the
// providers' documented input rules as validation functions whose errors name
// the field, and a tuned HTTP client.
//
// The clients themselves live in provider/easemob and provider/engagelab.
package provider

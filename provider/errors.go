package provider

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Class sorts a failed provider call by what the caller should do next.
type Class int

const (
	// ClassPermanent: the provider refused the request as wrong (400, 404, …);
	// retrying the same request will not help.
	ClassPermanent Class = iota
	// ClassRateLimited: over a QPS or task limit (HTTP 429, 403 LimitException,
	// EngageLab limit codes); try again later, it is not a failed push.
	ClassRateLimited
	// ClassTransient: 5xx, timeouts, connection errors; retry with backoff.
	ClassTransient
	// ClassAuth: credentials refused (401) even after one token refresh.
	ClassAuth
)

func (k Class) String() string {
	switch k {
	case ClassPermanent:
		return "permanent"
	case ClassRateLimited:
		return "rate_limited"
	case ClassTransient:
		return "transient"
	case ClassAuth:
		return "auth"
	default:
		return fmt.Sprintf("class(%d)", int(k))
	}
}

// Error is a failed provider call. It never carries a token or secret.
type Error struct {
	Provider    string        // "easemob" or "engagelab"
	Op          string        // endpoint, e.g. "POST /push/single"
	Class       Class         // what to do next
	Status      int           // HTTP status, 0 if no answer
	Type        string        // provider error type (e.g. "LimitException") or code ("27002")
	Description string        // provider's description
	RetryAfter  time.Duration // for ClassRateLimited, when known (Retry-After); else 0
	InvalidIDs  []string      // ids the provider named invalid (EngageLab 27005), if any
	Written     bool          // no answer, but the request had been written: the provider may have acted on it (an ambiguous send)
	Err         error         // underlying cause (network error, decode error), if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", e.Provider, e.Op, e.Class)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.Status)
		if e.Type != "" {
			fmt.Fprintf(&b, " %s", e.Type)
		}
		b.WriteString(")")
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the Class of a provider error anywhere in err's chain,
// and false if err holds no *Error.
func ClassOf(err error) (Class, bool) {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Class, true
	}
	return 0, false
}

// IsRateLimited reports whether err is a provider rate-limit refusal, with
// the provider's retry-after hint (0 if none).
func IsRateLimited(err error) (time.Duration, bool) {
	var pe *Error
	if errors.As(err, &pe) && pe.Class == ClassRateLimited {
		return pe.RetryAfter, true
	}
	return 0, false
}

// IsRetryable reports whether the call may succeed if repeated later
// (rate-limited or transient).
func IsRetryable(err error) bool {
	k, ok := ClassOf(err)
	return ok && (k == ClassRateLimited || k == ClassTransient)
}

// FieldError is one invalid input field, named as in the JSON the user sent.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// FieldErrors is a list of invalid fields; it is an error when not empty.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Add appends a field error.
func (es *FieldErrors) Add(field, format string, args ...any) {
	*es = append(*es, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// AddErr appends err if it is not nil. A FieldError is filed under field
// (when field is not empty) so callers can name the field as their own input
// calls it; FieldErrors are appended as they are; any other error is filed
// under field.
func (es *FieldErrors) AddErr(field string, err error) {
	if err == nil {
		return
	}
	var fes FieldErrors
	if errors.As(err, &fes) {
		*es = append(*es, fes...)
		return
	}
	var fe FieldError
	if errors.As(err, &fe) {
		if field != "" {
			fe.Field = field
		}
		*es = append(*es, fe)
		return
	}
	*es = append(*es, FieldError{Field: field, Message: err.Error()})
}

// Err returns es as an error, or nil when it is empty.
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

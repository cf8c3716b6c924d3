package pushsim

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// This file is what the two providers' routers share. Each provider API is
// an http.ServeMux of method and path patterns ("POST /{org}/{app}/push/single",
// "GET /v4/tags/{tag}/registration_ids/{id}"). The mux sees the request's
// path in a canonical form (routable), so that it matches what the provider
// would and never answers on its own (no redirect, no 405): segments are
// split on '/' and then unescaped, as the providers do, and leading or
// trailing slashes do not count.

// splitPath splits an escaped URL path into unescaped segments, leading and
// trailing slashes dropped.
func splitPath(escaped string) ([]string, error) {
	raw := strings.Split(strings.Trim(escaped, "/"), "/")
	out := make([]string, len(raw))
	for i, seg := range raw {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return nil, err
		}
		out[i] = u
	}
	return out, nil
}

// emptyStandIn returns the segment that stands in for segs' empty ones
// ("a//b") when they are routed, or "" if there are none. ServeMux would
// clean an empty segment away with a redirect; the stand-in is a segment
// none of segs is, and routed.arg gives it back as "".
func emptyStandIn(segs []string) string {
	if !slices.Contains(segs, "") {
		return ""
	}
	stand := "\x00"
	for slices.Contains(segs, stand) {
		stand += "\x00"
	}
	return stand
}

// escapeSegment escapes one path segment so that ServeMux takes it as one
// segment ('/' is %2F) and does not clean it away ("." and ".." are escaped
// too, so a label named "." stays a label).
func escapeSegment(seg string) string {
	switch seg {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(seg)
}

// callKey is the context key under which a routed request carries its call
// (*emCall or *elCall) from the dispatcher to the route's handler.
type callKey struct{}

// callOf returns the call r carries.
func callOf[T any](r *http.Request) T { return r.Context().Value(callKey{}).(T) }

// routable returns a copy of r, carrying call, whose path is prefix and
// then segs, each escaped and an empty one replaced by empty (see
// emptyStandIn): the form the routers match.
func routable(r *http.Request, prefix string, segs []string, empty string, call any) *http.Request {
	var path, raw strings.Builder
	path.WriteString(prefix)
	raw.WriteString(prefix)
	for _, seg := range segs {
		if seg == "" {
			seg = empty
		}
		path.WriteByte('/')
		path.WriteString(seg)
		raw.WriteByte('/')
		raw.WriteString(escapeSegment(seg))
	}
	u := *r.URL
	u.Path, u.RawPath = path.String(), raw.String()
	out := r.WithContext(context.WithValue(r.Context(), callKey{}, call))
	out.URL = &u
	return out
}

// routed is a request a router matched, as its route's handler sees it.
type routed struct {
	w     http.ResponseWriter
	r     *http.Request
	empty string // the stand-in for empty path segments, "" if none
}

// arg is the path segment the route's pattern names {name}.
func (c *routed) arg(name string) string {
	v := c.r.PathValue(name)
	if c.empty != "" && v == c.empty {
		return ""
	}
	return v
}

func (c *routed) request() *http.Request { return c.r }

// refuser is a routed call: its request, and how it answers one that does
// not parse or breaks a rule.
type refuser interface {
	request() *http.Request
	refuse(err error)
}

// decodeAs reads c's JSON body as a T and applies check to it (nil: no
// check); a body that does not parse or breaks the check is refused, and ok
// is false.
func decodeAs[T any](c refuser, check func(*T) error) (b *T, ok bool) {
	b = new(T)
	if err := decodeBody(c.request(), b); err != nil {
		c.refuse(err)
		return nil, false
	}
	if check != nil {
		if err := check(b); err != nil {
			c.refuse(err)
			return nil, false
		}
	}
	return b, true
}

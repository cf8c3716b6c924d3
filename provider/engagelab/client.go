// Package engagelab is a typed client of the EngageLab device API v4
// (../shared/provider-docs/004): devices, tags (EngageLab's labels), aliases,
// online status and quotas, with HTTP Basic auth.
//
// Inputs are checked against the documented rules before any call (errors
// are provider.FieldErrors naming the field); failed calls are
// *provider.Error classified as rate-limited, transient, auth or permanent.
// The app secret never appears in errors or logs.
package engagelab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/provider"
)

const (
	providerName = provider.EngageLab
	maxResponse  = 4 << 20
	// MaxTagsPerDevice is how many tags one device may carry.
	MaxTagsPerDevice = 100
)

// Config configures a Client.
type Config struct {
	BaseURL           string // host root, e.g. https://pushapi-sgp.engagelab.com
	AppKey, AppSecret string
	HTTPClient        *http.Client
	Hooks             provider.Hooks
	Clock             clock.Clock
	Logger            zerolog.Logger
}

// Client calls one EngageLab app. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	http *http.Client
	log  zerolog.Logger
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	var errs provider.FieldErrors
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.Add("base_url", "must be an absolute http(s) URL")
	}
	if cfg.AppKey == "" {
		errs.Add("app_key", "is required")
	}
	if cfg.AppSecret == "" {
		errs.Add("app_secret", "is required")
	}
	if err := errs.Err(); err != nil {
		return nil, fmt.Errorf("engagelab config: %w", err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = provider.NewHTTPClient(provider.HTTPOptions{})
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/") + "/v4", http: cfg.HTTPClient, log: cfg.Logger}, nil
}

type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data"`
	} `json:"error"`
}

// call sends one request through the gate and decodes a 200 answer into out
// (when not nil).
func (c *Client) call(ctx context.Context, method, path, op string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("engagelab %s: encode request: %w", op, err)
		}
	}
	// The request is built before the gate is asked: once the slot is
	// granted, only the send is left.
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassPermanent, Err: fmt.Errorf("build request: %w", err)}
	}
	req.SetBasicAuth(c.cfg.AppKey, c.cfg.AppSecret)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	grant, err := c.cfg.Hooks.Before(ctx, provider.GroupTags)
	if err != nil {
		return err
	}
	req, wt := provider.Trace(req, grant, provider.GroupTags)
	start := c.cfg.Clock.Now()
	err = c.roundTrip(ctx, req, op, out)
	wt.Done()
	err = wt.Ambiguous(err)
	c.cfg.Hooks.After(provider.GroupTags, op, c.cfg.Clock.Now().Sub(start), err)
	return err
}

func (c *Client) roundTrip(ctx context.Context, req *http.Request, op string, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("engagelab %s: %w", op, ctx.Err())
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: fmt.Errorf("read response: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return mapError(op, resp, b)
	}
	if out == nil || len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: fmt.Errorf("decode response: %w", err)}
	}
	return nil
}

// limitMeaning spells out EngageLab's quota codes (file 004).
var limitMeaning = map[int]string{
	27011: "a device can carry at most 100 tags (provider limit)",
	27012: "the tag the device should be bound to does not exist",
	27013: "the app already has 100,000 tags (provider limit)",
	27014: "the tag already has 100,000 devices (provider limit)",
	27015: "the alias bound to the device does not exist",
	27016: "the app already has 100,000 aliases (provider limit)",
	27017: "tag over 40 characters (provider limit)",
}

// mapError classifies a non-200 answer by HTTP status and EngageLab code.
func mapError(op string, resp *http.Response, body []byte) *provider.Error {
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	e := &provider.Error{Provider: providerName, Op: op, Status: resp.StatusCode, Description: eb.Error.Message}
	if eb.Error.Code != 0 {
		e.Type = strconv.Itoa(eb.Error.Code)
	}
	if e.Description == "" {
		e.Description = strings.TrimSpace(string(body))
		if len(e.Description) > 200 {
			e.Description = e.Description[:200] + "…"
		}
	}
	code := eb.Error.Code
	if code == 27005 && eb.Error.Data != "" {
		var d struct {
			InvalidRegIDs []string `json:"invalid_regids"`
		}
		if json.Unmarshal([]byte(eb.Error.Data), &d) == nil {
			e.InvalidIDs = d.InvalidRegIDs
		}
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Class = provider.ClassRateLimited
		if n, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	case code >= 27011 && code <= 27017:
		if m, ok := limitMeaning[code]; ok {
			e.Description = m + " (" + e.Description + ")"
		}
		// Quota and size limits (tags per device, tags per app, devices per
		// tag, alias count, tag length, missing tag/alias): not a matter of
		// waiting. EngageLab answers them with 401, but they are not auth.
		e.Class = provider.ClassPermanent
	case code == 21004 || code == 27001 || code == 27004 || resp.StatusCode == http.StatusUnauthorized:
		e.Class = provider.ClassAuth
		e.Description = "app key or secret refused"
	case code == 27000 || resp.StatusCode >= 500:
		e.Class = provider.ClassTransient
	default:
		e.Class = provider.ClassPermanent
	}
	return e
}

// Package easemob is a typed client of the Easemob / Agora Chat REST API
// endpoints campaignd uses: push labels and members, pushes (sync, async,
// batch, label, broadcast task), per-user push settings, notification modes,
// languages and templates (../shared/provider-docs 000–003).
//
// Every input is checked against the provider's documented rules before any
// call (errors are provider.FieldErrors naming the field); every failed call
// is a *provider.Error classified as rate-limited, transient, auth or
// permanent. The app token is fetched with client credentials, cached,
// refreshed before it expires and once on a 401; tokens and secrets never
// appear in errors or logs.
package easemob

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
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/provider"
)

const (
	providerName = provider.Easemob
	maxResponse  = 4 << 20
)

// Config configures a Client.
type Config struct {
	BaseURL                string // provider host root, e.g. https://a1.easemob.com
	Org, App               string
	ClientID, ClientSecret string // client credentials, or
	AppToken               string // a fixed app token
	HTTPClient             *http.Client
	Hooks                  provider.Hooks
	Location               *time.Location // provider server zone for startDate; nil → UTC
	Clock                  clock.Clock
	Logger                 zerolog.Logger
	// RefreshAt is the share of a token's lifetime after which it is
	// refreshed (default 0.8).
	RefreshAt float64
}

// Client calls one Easemob app. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string // BaseURL/org/app
	http *http.Client
	clk  clock.Clock
	log  zerolog.Logger

	mu       sync.Mutex
	token    string
	refresh  time.Time // refresh (in the background) after this
	usable   time.Time // send it until this
	expires  time.Time
	inflight *tokenFetch
}

type tokenFetch struct {
	done  chan struct{}
	token string
	err   error
}

// New validates cfg and returns a client.
func New(cfg Config) (*Client, error) {
	var errs provider.FieldErrors
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.Add("base_url", "must be an absolute http(s) URL")
	}
	if cfg.Org == "" || strings.ContainsAny(cfg.Org, "/?#") {
		errs.Add("org", "is required and must be one path segment")
	}
	if cfg.App == "" || strings.ContainsAny(cfg.App, "/?#") {
		errs.Add("app", "is required and must be one path segment")
	}
	if cfg.AppToken == "" && (cfg.ClientID == "" || cfg.ClientSecret == "") {
		errs.Add("client_id", "client_id and client_secret, or app_token, are required")
	}
	if err := errs.Err(); err != nil {
		return nil, fmt.Errorf("easemob config: %w", err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = provider.NewHTTPClient(provider.HTTPOptions{})
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.RefreshAt <= 0 || cfg.RefreshAt >= 1 {
		cfg.RefreshAt = 0.8
	}
	c := &Client{
		cfg:  cfg,
		base: strings.TrimRight(cfg.BaseURL, "/") + "/" + url.PathEscape(cfg.Org) + "/" + url.PathEscape(cfg.App),
		http: cfg.HTTPClient,
		clk:  cfg.Clock,
		log:  cfg.Logger,
	}
	return c, nil
}

// envelope is the common response shape.
type envelope struct {
	Timestamp int64           `json:"timestamp"`
	Duration  int64           `json:"duration"`
	Data      json.RawMessage `json:"data"`
	Cursor    string          `json:"cursor"`
	Entities  json.RawMessage `json:"entities"`
}

type errorBody struct {
	Error            string `json:"error"`
	Exception        string `json:"exception"`
	ErrorDescription string `json:"error_description"`
}

// call sends one request to group with the app token, refreshing the token
// once on a 401, and decodes the envelope.
func (c *Client) call(ctx context.Context, group provider.Group, method, path string, body any) (*envelope, error) {
	return c.callInto(ctx, group, method, path, body, nil)
}

// callInto is call that lets into (when not nil) decode a 200 answer's
// body, in one pass (the envelope returned is then empty).
func (c *Client) callInto(ctx context.Context, group provider.Group, method, path string, body any, into bodyDecoder) (*envelope, error) {
	return c.callOp(ctx, group, method+" "+opName(path), method, path, body, into)
}

// callOp is callInto with the operation's name (for errors and metrics)
// given.
func (c *Client) callOp(ctx context.Context, group provider.Group, op, method, path string, body any, into bodyDecoder) (*envelope, error) {
	var payload []byte
	if raw, ok := body.(rawBody); ok {
		payload = raw
	} else if body != nil {
		var err error
		payload, err = json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("easemob %s: encode request: %w", op, err)
		}
	}
	failed := "" // the token a 401 refused
	for attempt := 0; ; attempt++ {
		// Have a token before waiting for a slot (the first fetch may
		// take a while); the one sent is read again once the slot is
		// granted (see send), so a long wait never sends a stale one.
		if _, err := c.appToken(ctx, failed); err != nil {
			return nil, err
		}
		env, status, tok, err := c.send(ctx, group, op, method, c.base+path, payload, into)
		if err == nil {
			return env, nil
		}
		if status == http.StatusUnauthorized && attempt == 0 && c.cfg.AppToken == "" {
			failed = tok
			c.log.Info().Str("op", op).Msg("easemob answered 401; the refused app token is replaced once")
			continue
		}
		return nil, err
	}
}

// opName replaces the variable parts of a path for error and metric names.
func opName(path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if i := strings.IndexByte(segs[len(segs)-1], '?'); i >= 0 {
		segs[len(segs)-1] = segs[len(segs)-1][:i]
	}
	switch {
	case len(segs) >= 2 && segs[0] == "push" && (segs[1] == "sync" || segs[1] == "async"):
		return "/push/" + segs[1] + "/{target}"
	case len(segs) >= 3 && segs[0] == "push" && segs[1] == "label":
		segs[2] = "{label}"
		if len(segs) == 5 {
			segs[4] = "{username}"
		}
	case len(segs) >= 2 && segs[0] == "users":
		segs[1] = "{username}"
		if len(segs) == 5 {
			segs[4] = "{key}"
		}
	case len(segs) == 3 && segs[0] == "notification":
		segs[2] = "{name}"
	}
	return "/" + strings.Join(segs, "/")
}

// send performs one HTTP request (through the gate) and maps the answer.
// It returns the token it sent (for a 401's retry).
func (c *Client) send(ctx context.Context, group provider.Group, op, method, url string, payload []byte, into bodyDecoder) (*envelope, int, string, error) {
	// The request is built before the gate is asked: once the slot is
	// granted, only the token and the send are left (a late send could
	// crowd the provider's window of the calls after it).
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, 0, "", &provider.Error{Provider: providerName, Op: op, Class: provider.ClassPermanent, Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	grant, err := c.cfg.Hooks.Before(ctx, group)
	if err != nil {
		return nil, 0, "", err
	}
	// The token is taken at the slot, not before the wait: a wait of
	// seconds must not send a token that expired meanwhile. It is cached
	// and refreshed in the background ahead of its expiry, so this does
	// not wait (unless no token is valid any more).
	tok, err := c.appToken(ctx, "")
	if err != nil {
		return nil, 0, "", err // nothing was sent on this slot
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req, wt := provider.Trace(req, grant, group)
	start := c.clk.Now()
	env, status, err := c.roundTrip(ctx, op, req, into)
	wt.Done()
	err = wt.Ambiguous(err)
	c.cfg.Hooks.After(group, op, c.clk.Now().Sub(start), err)
	return env, status, tok, err
}

func (c *Client) roundTrip(ctx context.Context, op string, req *http.Request, into bodyDecoder) (*envelope, int, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("easemob %s: %w", op, ctx.Err())
		}
		return nil, 0, &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Err: scrub(err)}
	}
	defer resp.Body.Close()
	body, done, err := readBody(resp.Body, resp.ContentLength, maxResponse)
	defer done()
	if err != nil {
		return nil, resp.StatusCode, &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: fmt.Errorf("read response: %w", scrub(err))}
	}
	if len(body) > maxResponse {
		return nil, resp.StatusCode, &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Description: "response over 4 MiB"}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, mapError(op, resp, body, c.clk.Now())
	}
	var env envelope
	if into != nil {
		if err := into.decodeBody(body); err != nil {
			return nil, resp.StatusCode, &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: fmt.Errorf("decode response: %w", err)}
		}
		return &env, resp.StatusCode, nil
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, resp.StatusCode, &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: fmt.Errorf("decode response: %w", err)}
	}
	return &env, resp.StatusCode, nil
}

// scrub drops the URL from a transport error (it holds no secret, but keep
// errors short and stable).
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// mapError classifies a non-200 answer.
func mapError(op string, resp *http.Response, body []byte, now time.Time) *provider.Error {
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	e := &provider.Error{Provider: providerName, Op: op, Status: resp.StatusCode, Type: eb.Error, Description: truncate(eb.ErrorDescription, 300)}
	if e.Type == "" && e.Description == "" {
		e.Description = truncate(strings.TrimSpace(string(body)), 200)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Class = provider.ClassRateLimited
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	case resp.StatusCode == http.StatusForbidden && eb.Error == "LimitException":
		e.Class = provider.ClassRateLimited
	case resp.StatusCode == http.StatusUnauthorized:
		e.Class = provider.ClassAuth
		e.Description = "app token refused" // never echo token details
	case resp.StatusCode >= 500:
		e.Class = provider.ClassTransient
	default:
		e.Class = provider.ClassPermanent
	}
	return e
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date (how
// long from now).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// appToken returns a valid app token: the fixed one, the cached one, or a
// fresh one (one fetch shared by concurrent callers). A cached token past
// its refresh point is still returned while it is valid, and one fetch of
// its successor starts in the background, so requests do not wait for a
// refresh. failed is a token the provider refused (401): it is replaced,
// unless another caller has already replaced it (then the new one is
// returned, with no fetch).
func (c *Client) appToken(ctx context.Context, failed string) (string, error) {
	if c.cfg.AppToken != "" {
		return c.cfg.AppToken, nil
	}
	c.mu.Lock()
	if failed != "" && c.token == failed {
		c.token = ""
	}
	now := c.clk.Now()
	if c.token != "" && now.Before(c.usable) {
		tok := c.token
		if !now.Before(c.refresh) && c.inflight == nil {
			c.startFetchLocked()
		}
		c.mu.Unlock()
		return tok, nil
	}
	f := c.inflight
	if f == nil {
		f = c.startFetchLocked()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", fmt.Errorf("easemob token: %w", ctx.Err())
	}
}

func (c *Client) startFetchLocked() *tokenFetch {
	f := &tokenFetch{done: make(chan struct{})}
	c.inflight = f
	go c.fetchToken(f)
	return f
}

func (c *Client) fetchToken(f *tokenFetch) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]string{
		"grant_type":    "client_credentials",
		"client_id":     c.cfg.ClientID,
		"client_secret": c.cfg.ClientSecret,
	})
	op := "POST /token"
	var tok tokenResponse
	grant, err := c.cfg.Hooks.Before(ctx, provider.GroupToken)
	if err == nil {
		start := c.clk.Now()
		err = c.postToken(ctx, op, body, grant, &tok)
		c.cfg.Hooks.After(provider.GroupToken, op, c.clk.Now().Sub(start), err)
	}
	now := c.clk.Now()
	c.mu.Lock()
	if err == nil {
		life := time.Duration(tok.ExpiresIn) * time.Second
		if life <= 0 {
			life = time.Hour
		}
		c.token = tok.AccessToken
		c.expires = now.Add(life)
		c.refresh = now.Add(time.Duration(float64(life) * c.cfg.RefreshAt))
		// Not sent in its last 5% of life (at most 1 minute): the
		// provider's clock started it before this answer arrived.
		c.usable = c.expires.Add(-min(life/20, time.Minute))
		f.token = tok.AccessToken
		c.log.Debug().Dur("lifetime", life).Msg("easemob app token fetched")
	} else {
		f.err = err
	}
	c.inflight = nil
	c.mu.Unlock()
	close(f.done)
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (c *Client) postToken(ctx context.Context, op string, body []byte, grant provider.Grant, out *tokenResponse) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/token", bytes.NewReader(body))
	if err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassPermanent, Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req, wt := provider.Trace(req, grant, provider.GroupToken)
	resp, err := c.http.Do(req)
	wt.Done()
	if err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Err: scrub(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: scrub(err)}
	}
	if resp.StatusCode != http.StatusOK {
		e := mapError(op, resp, b, c.clk.Now())
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest {
			e.Class = provider.ClassAuth
			e.Description = "client credentials refused"
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Err: errors.New("decode token response")}
	}
	if out.AccessToken == "" {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: resp.StatusCode, Description: "token response without access_token"}
	}
	return nil
}

func decodeData(op string, env *envelope, out any) error {
	if err := json.Unmarshal(env.Data, out); err != nil {
		return &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: 200, Err: fmt.Errorf("decode data: %w", err)}
	}
	return nil
}

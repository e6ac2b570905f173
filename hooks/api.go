package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Authenticator asks Ocean about a caller's token (ocean.Client). An
// *ocean.Error it returns is written to the client as it is.
type Authenticator interface {
	// Me tells who token belongs to.
	Me(ctx context.Context, token string) (ocean.Me, error)
	// CheckWriteAccount tells whether token may change the account's
	// settings (an app token needs write:account); nil means it may.
	CheckWriteAccount(ctx context.Context, token string) error
}

// Deliveries is the delivery queue as the management API needs it.
type Deliveries interface {
	// CancelHook drops everything queued for a deleted hook; the work may
	// be done in the background after it returns.
	CancelHook(ctx context.Context, hookID string) error
	// List returns a hook's deliveries newest first, at most limit, older
	// than untilID when it is set.
	List(ctx context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error)
	// Redeliver queues one delivery again, or every dead letter of the hook
	// when deliveryID is empty (possibly in the background, after it
	// returns); webhook.ErrNoSuchDelivery if deliveryID names no delivery of
	// the hook.
	Redeliver(ctx context.Context, hookID, deliveryID string) (int, error)
	// SendTest makes one attempt of a test delivery and records it on the
	// hook (latestSentAt/latestStatus) like any attempt. status is the
	// receiver's, 1 when none answered, 0 when no attempt could be made.
	SendTest(ctx context.Context, t webhook.TestSend) (status int, err error)
}

// APIOptions configure the management API. Zero values take the defaults.
type APIOptions struct {
	// Logger gets failures; never a token, a secret or a request body.
	Logger *slog.Logger
	// Now is the clock of test payloads and of the test rate limit.
	Now func() time.Time
	// TakeOver, when set, is Ocean's own API, through which a user's hooks
	// in Ocean are taken over the first time the user reaches this API (see
	// takeover). Nil: hooks in Ocean are left alone.
	TakeOver Ocean
	// Registerer receives the takeover's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Limits of Ocean's API server and of i/webhooks/test.
const (
	maxBodyBytes    = 1 << 20 // Ocean's JSON body limit
	testLimitMax    = 60      // i/webhooks/test: 60 calls …
	testLimitWindow = 15 * time.Minute
	cacheControl    = "private, max-age=0, must-revalidate"
	apiPrefix       = "/api/i/webhooks/"
)

// Limits of our own endpoints, per user like test's: a listing builds up to
// about a megabyte of JSON (queue.MaxListBytes), a redelivery queues work.
const (
	deliveriesLimitMax    = 30 // i/webhooks/deliveries: 30 calls …
	deliveriesLimitWindow = time.Minute
	redeliverLimitMax     = 60 // i/webhooks/redeliver: 60 calls …
	redeliverLimitWindow  = 15 * time.Minute
)

// API answers POST /api/i/webhooks/{create,list,show,update,delete,test}
// exactly as Ocean does (parameters, limits, status codes, errors), plus our
// deliveries and redeliver. It is an http.Handler for the proxy's local seam.
type API struct {
	store      *Store
	auth       Authenticator
	deliveries Deliveries
	log        *slog.Logger
	now        func() time.Time
	endpoints  map[string]endpoint
	takeover   *takeover // nil: off
}

// endpoint is one management endpoint: its parameters, whether Ocean
// declares it `secure` (native tokens only), whether it changes hooks (kind
// write:account in Ocean), its rate limit, its handler.
type endpoint struct {
	params *schema
	secure bool
	write  bool
	limit  *limiter
	serve  func(ctx context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error)
}

// NewAPI returns the management API over store, authenticating through auth
// and reaching the queue through deliveries.
func NewAPI(store *Store, auth Authenticator, deliveries Deliveries, opts APIOptions) *API {
	a := &API{store: store, auth: auth, deliveries: deliveries, log: opts.Logger, now: opts.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if opts.TakeOver != nil {
		a.takeover = newTakeover(store, opts.TakeOver, auth, a.log, a.now, opts.Registerer)
	}
	// Ocean's kinds: create, update and delete are write:account, list,
	// show and test read:account (test is also `secure`, so native tokens
	// only); of ours, redeliver changes what is sent and is a write,
	// deliveries a read. Reads need no check of their own: Ocean's /api/i,
	// which authenticates every call, is itself read:account in current
	// versions, so an app token without it never gets this far (versions
	// whose i declares no kind let any app token read).
	a.endpoints = map[string]endpoint{
		"create":     {params: paramsCreate, write: true, serve: a.create},
		"list":       {params: paramsList, serve: a.list},
		"show":       {params: paramsID, serve: a.show},
		"update":     {params: paramsEdit, write: true, serve: a.update},
		"delete":     {params: paramsID, write: true, serve: a.delete},
		"test":       {params: paramsTest, secure: true, limit: newLimiter(testLimitMax, testLimitWindow, a.now), serve: a.test},
		"deliveries": {params: paramsDeliveries, limit: newLimiter(deliveriesLimitMax, deliveriesLimitWindow, a.now), serve: a.listDeliveries},
		"redeliver":  {params: paramsRedeliver, write: true, limit: newLimiter(redeliverLimitMax, redeliverLimitWindow, a.now), serve: a.redeliver},
	}
	return a
}

// ServeHTTP answers one call the way Ocean's API server would.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", cacheControl)
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		preflight(w, r)
		return
	}
	name, under := strings.CutPrefix(r.URL.Path, apiPrefix)
	ep, known := a.endpoints[name]
	if !under || !known {
		notFound(w, r)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		// Ocean answers GET on a POST-only endpoint with a bare 405.
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	params, body, ferr := readParams(r)
	if ferr != nil {
		ferr.write(w)
		return
	}
	token, present, cerr := credential(r, body)
	if cerr != nil {
		cerr(w)
		return
	}
	var me ocean.Me
	if present {
		if token == "" {
			ocean.Write(w, ocean.ErrAuthenticationFailed)
			return
		}
		var err error
		if me, err = a.auth.Me(r.Context(), token); err != nil {
			a.writeAuthError(w, r, name, err)
			return
		}
	}
	if ep.secure && (!present || !isNativeToken(token)) {
		ocean.Write(w, ocean.ErrAccessDenied)
		return
	}
	if !present {
		ocean.Write(w, ocean.ErrCredentialRequired)
		return
	}
	if ep.limit != nil {
		if wait, ok := ep.limit.allow(me.ID); !ok {
			e := *ocean.ErrRateLimitExceeded
			e.Header = http.Header{"Retry-After": {strconv.Itoa(int((wait + time.Second - 1) / time.Second))}}
			ocean.Write(w, &e)
			return
		}
	}
	if ep.write && !isNativeToken(token) {
		// Ocean refuses an app token without the endpoint's kind before it
		// validates the parameters; a native token has every permission.
		if err := a.auth.CheckWriteAccount(r.Context(), token); err != nil {
			a.writeAuthError(w, r, name, err)
			return
		}
	}
	if perr := validate(params, ep.params); perr != nil {
		ocean.Write(w, perr.apiError())
		return
	}
	if a.takeover != nil {
		// The caller's hooks in Ocean join theirs here before the call
		// sees them; afterwards this costs a map lookup.
		pending, oerr := a.takeover.run(r.Context(), me, token)
		if oerr != nil {
			ocean.Write(w, oerr)
			return
		}
		if pending {
			h.Set(TakeoverHeader, TakeoverPending)
			h.Set("Access-Control-Expose-Headers", TakeoverHeader)
		}
	}
	res, oerr := ep.serve(r.Context(), me, params.(map[string]any))
	if oerr != nil {
		ocean.Write(w, oerr)
		return
	}
	if res == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// isNativeToken tells a user's own session token (Ocean's `secure`
// endpoints accept no other) from an app's access token, as Ocean does: by
// its length.
func isNativeToken(token string) bool { return len(token) == 16 }

// credential reads the caller's token exactly as Ocean does
// (ocean.ReadCredential). present is false when there is none. A non-nil
// answer is what to write instead: Ocean's bare 400 for an `i` that is
// neither a string nor null, AUTHENTICATION_FAILED for a credential Ocean
// could read differently, so that no call acts as an account Ocean might
// not have seen in it.
func credential(r *http.Request, body []byte) (token string, present bool, answer func(http.ResponseWriter)) {
	c, err := ocean.ReadCredential(r, body)
	switch {
	case errors.Is(err, ocean.ErrCredentialNotString):
		return "", false, func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) }
	case err != nil:
		return "", false, func(w http.ResponseWriter) { ocean.Write(w, ocean.ErrAuthenticationFailed) }
	}
	return c.Token, c.Present, nil
}

func (a *API) writeAuthError(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	var oe *ocean.Error
	if errors.As(err, &oe) {
		ocean.Write(w, oe)
		return
	}
	if r.Context().Err() != nil {
		return // the caller is gone
	}
	a.log.Error("hooks api: token check failed", "endpoint", endpoint, "err", err)
	ocean.Write(w, ocean.ErrUpstreamUnavailable)
}

// internal is Ocean's INTERNAL_ERROR for a failure of ours, with an error id
// that is also logged.
func (a *API) internal(endpoint string, err error) *ocean.Error {
	id := uuid.NewString()
	a.log.Error("hooks api: internal error", "endpoint", endpoint, "errorId", id, "err", err)
	return ocean.ErrInternal.With(map[string]any{"message": err.Error(), "code": "Error", "id": id})
}

// hookView is a hook as Ocean's API shows it (UserWebhook schema, key order
// kept).
type hookView struct {
	ID           string   `json:"id"`
	UserID       string   `json:"userId"`
	Name         string   `json:"name"`
	On           []string `json:"on"`
	URL          string   `json:"url"`
	Secret       string   `json:"secret"`
	Active       bool     `json:"active"`
	LatestSentAt *string  `json:"latestSentAt"`
	LatestStatus *int     `json:"latestStatus"`
}

func viewOf(h Hook) hookView {
	v := hookView{ID: h.ID, UserID: h.UserID, Name: h.Name, On: cloneOn(h.On), URL: h.URL,
		Secret: h.Secret, Active: h.Active, LatestStatus: h.LatestStatus}
	if h.LatestSentAt != nil {
		v.LatestSentAt = ptrString(isoMillis(*h.LatestSentAt))
	}
	return v
}

func strParam(p map[string]any, name string) (string, bool) {
	s, ok := p[name].(string)
	return s, ok
}

func strsParam(p map[string]any, name string) ([]string, bool) {
	raw, ok := p[name].([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i], _ = v.(string)
	}
	return out, true
}

func hasAdminType(on []string) bool { return slices.ContainsFunc(on, webhook.IsAdminEventType) }

func (a *API) create(_ context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	n, err := a.store.Count(me.ID)
	if err != nil {
		return nil, a.internal("create", err)
	}
	if n >= me.WebhookLimit {
		return nil, ocean.ErrTooManyWebhooks
	}
	on, _ := strsParam(p, "on")
	if hasAdminType(on) && !me.IsAdmin {
		return nil, ocean.ErrYouAreNotAdmin
	}
	name, _ := strParam(p, "name")
	url, _ := strParam(p, "url")
	secret, _ := strParam(p, "secret")
	h, err := a.store.Create(Hook{UserID: me.ID, Name: name, URL: url, Secret: secret, On: on, Active: true}, me.WebhookLimit)
	if errors.Is(err, ErrLimit) {
		return nil, ocean.ErrTooManyWebhooks
	}
	if err != nil {
		return nil, a.internal("create", err)
	}
	return viewOf(h), nil
}

func (a *API) list(_ context.Context, me ocean.Me, _ map[string]any) (any, *ocean.Error) {
	hooks, err := a.store.List(me.ID)
	if err != nil {
		return nil, a.internal("list", err)
	}
	views := make([]hookView, len(hooks))
	for i, h := range hooks {
		views[i] = viewOf(h)
	}
	return views, nil
}

// owned finds the caller's hook named by webhookId; another user's hook is
// "no such webhook" (notFound, the endpoint's own error).
func (a *API) owned(endpoint string, me ocean.Me, p map[string]any, notFound *ocean.Error) (Hook, *ocean.Error) {
	id, _ := strParam(p, "webhookId")
	h, err := a.store.Owned(me.ID, id)
	if errors.Is(err, ErrNotFound) {
		return Hook{}, notFound
	}
	if err != nil {
		return Hook{}, a.internal(endpoint, err)
	}
	return h, nil
}

func (a *API) show(_ context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	h, oerr := a.owned("show", me, p, ocean.ErrNoSuchWebhookShow)
	if oerr != nil {
		return nil, oerr
	}
	return viewOf(h), nil
}

func (a *API) update(_ context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	h, oerr := a.owned("update", me, p, ocean.ErrNoSuchWebhookUpdate)
	if oerr != nil {
		return nil, oerr
	}
	var patch Patch
	if on, ok := strsParam(p, "on"); ok {
		if hasAdminType(on) && !me.IsAdmin {
			return nil, ocean.ErrYouAreNotAdmin
		}
		patch.On = &on
	}
	if v, ok := strParam(p, "name"); ok {
		patch.Name = &v
	}
	if v, ok := strParam(p, "url"); ok {
		patch.URL = &v
	}
	if v, present := p["secret"]; present {
		s, _ := v.(string) // null clears the secret
		patch.Secret = &s
	}
	if v, ok := p["active"].(bool); ok {
		patch.Active = &v
	}
	_, err := a.store.Update(me.ID, h.ID, patch)
	if errors.Is(err, ErrNotFound) {
		return nil, ocean.ErrNoSuchWebhookUpdate
	}
	if err != nil {
		return nil, a.internal("update", err)
	}
	return nil, nil
}

func (a *API) delete(ctx context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	id, _ := strParam(p, "webhookId")
	err := a.store.Delete(me.ID, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ocean.ErrNoSuchWebhookDelete
	}
	if err != nil {
		return nil, a.internal("delete", err)
	}
	// The hook is gone from the index, so nothing new is queued for it;
	// what was queued is removed in the background (the queue finishes it
	// after a restart too), so the answer does not wait for it.
	if err := a.deliveries.CancelHook(context.WithoutCancel(ctx), id); err != nil {
		a.log.Error("hooks api: cancel deliveries of a deleted hook", "hook", id, "err", err)
	}
	return nil, nil
}

func (a *API) test(ctx context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	h, oerr := a.owned("test", me, p, ocean.ErrNoSuchWebhookTest)
	if oerr != nil {
		return nil, oerr
	}
	typ, _ := strParam(p, "type")
	body, ok := testBody(typ, a.now())
	if !ok {
		// Ocean has no test payload for its admin types and fails with 500.
		return nil, ocean.ErrInternal.With(map[string]any{
			"message": "Unhandled webhook type: " + typ, "code": "Error", "id": uuid.NewString()})
	}
	send := webhook.TestSend{HookID: h.ID, UserID: h.UserID, URL: h.URL, Secret: h.Secret, Type: typ, Body: body}
	if override, ok := p["override"].(map[string]any); ok {
		if v, ok := strParam(override, "url"); ok {
			send.URL = v
		}
		if v, ok := strParam(override, "secret"); ok {
			send.Secret = v
		}
	}
	status, err := a.deliveries.SendTest(ctx, send)
	if err != nil && status == 0 {
		return nil, a.internal("test", err)
	}
	return nil, nil
}

func (a *API) listDeliveries(ctx context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	h, oerr := a.owned("deliveries", me, p, ocean.ErrNoSuchWebhookDeliveries)
	if oerr != nil {
		return nil, oerr
	}
	limit, _ := asInt(p["limit"])
	until, _ := strParam(p, "untilId")
	list, err := a.deliveries.List(ctx, h.ID, int(limit), until)
	if err != nil {
		return nil, a.internal("deliveries", err)
	}
	if list == nil {
		list = []webhook.Delivery{}
	}
	return list, nil
}

func (a *API) redeliver(ctx context.Context, me ocean.Me, p map[string]any) (any, *ocean.Error) {
	h, oerr := a.owned("redeliver", me, p, ocean.ErrNoSuchWebhookRedeliver)
	if oerr != nil {
		return nil, oerr
	}
	delivery, _ := strParam(p, "deliveryId")
	_, err := a.deliveries.Redeliver(ctx, h.ID, delivery)
	if errors.Is(err, webhook.ErrNoSuchDelivery) {
		return nil, ocean.ErrNoSuchDelivery
	}
	if err != nil {
		return nil, a.internal("redeliver", err)
	}
	return nil, nil
}

// marshal encodes v as JavaScript's JSON.stringify would: no HTML escaping,
// no trailing newline.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own view types reach here; they always encode.
		panic("hooks: encode response: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body := marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// fastifyError is the body Ocean's HTTP framework (Fastify) answers with
// when a request fails before Ocean's own code runs.
type fastifyError struct {
	StatusCode int    `json:"statusCode"`
	Code       string `json:"code,omitempty"`
	Error      string `json:"error"`
	Message    string `json:"message"`
}

func (e *fastifyError) write(w http.ResponseWriter) { writeJSON(w, e.StatusCode, e) }

var (
	errBodyTooLarge = &fastifyError{StatusCode: http.StatusRequestEntityTooLarge, Code: "FST_ERR_CTP_BODY_TOO_LARGE",
		Error: "Payload Too Large", Message: "Request body is too large"}
	errEmptyJSONBody = &fastifyError{StatusCode: http.StatusBadRequest, Code: "FST_ERR_CTP_EMPTY_JSON_BODY",
		Error: "Bad Request", Message: "Body cannot be empty when content-type is set to 'application/json'"}
	errInvalidJSONBody = &fastifyError{StatusCode: http.StatusBadRequest, Code: "FST_ERR_CTP_INVALID_JSON_BODY",
		Error: "Bad Request", Message: "Body is not valid JSON but content-type is set to 'application/json'"}
)

func errMediaType(contentType string) *fastifyError {
	if contentType == "" {
		contentType = "undefined"
	}
	return &fastifyError{StatusCode: http.StatusUnsupportedMediaType, Code: "FST_ERR_CTP_INVALID_MEDIA_TYPE",
		Error: "Unsupported Media Type", Message: "Unsupported Media Type: " + contentType}
}

// notFound answers a path under /api/i/webhooks/ that names no endpoint:
// Ocean's UNKNOWN_API_ENDPOINT for GET, Fastify's own 404 otherwise.
func notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		ocean.Write(w, ocean.ErrUnknownEndpoint)
		return
	}
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	writeJSON(w, http.StatusNotFound, struct {
		Message    string `json:"message"`
		Error      string `json:"error"`
		StatusCode int    `json:"statusCode"`
	}{"Route " + r.Method + ":" + uri + " not found", "Not Found", http.StatusNotFound})
}

// preflight answers a CORS preflight as Ocean's CORS plugin does (any
// origin).
func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET,HEAD,POST")
	if v := r.Header.Get("Access-Control-Request-Headers"); v != "" {
		h.Set("Access-Control-Allow-Headers", v)
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}

// readParams reads the call's parameters as Ocean's server does: a JSON body
// (at most 1 MiB), a text body as a bare string, nothing (nil, JavaScript's
// undefined) for an empty or multipart body. Any other content type, an
// oversized or malformed body is Fastify's error. body is the bytes read
// (nil when none were), for reading the credential.
func readParams(r *http.Request) (params any, body []byte, ferr *fastifyError) {
	ct := r.Header.Get("Content-Type")
	essence, _, _ := strings.Cut(ct, ";")
	essence = strings.ToLower(strings.TrimSpace(essence))
	switch {
	case ct == "" && r.ContentLength == 0:
		return nil, nil, nil
	case essence == "multipart/form-data":
		return nil, nil, nil // parsed only for file uploads, which these are not
	case essence != "application/json" && essence != "text/plain":
		return nil, nil, errMediaType(ct)
	}
	if r.ContentLength > maxBodyBytes {
		return nil, nil, errBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, nil, &fastifyError{StatusCode: http.StatusBadRequest, Error: "Bad Request", Message: "Request body could not be read"}
	}
	if len(body) > maxBodyBytes {
		return nil, nil, errBodyTooLarge
	}
	if essence == "text/plain" {
		return string(body), body, nil
	}
	if len(body) == 0 {
		return nil, nil, errEmptyJSONBody
	}
	v, ok := parseJSON(body)
	if !ok {
		return nil, nil, errInvalidJSONBody
	}
	return v, body, nil
}

// parseJSON decodes one JSON value (numbers kept exact) and refuses, like
// Fastify's secure parser, objects that would poison a JavaScript prototype.
func parseJSON(body []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data
	}
	return v, !poisoned(v)
}

func poisoned(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["__proto__"]; ok {
			return true
		}
		if c, ok := x["constructor"].(map[string]any); ok {
			if _, ok := c["prototype"]; ok {
				return true
			}
		}
		for _, e := range x {
			if poisoned(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if poisoned(e) {
				return true
			}
		}
	}
	return false
}

package oceantest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// misskeyID is Ajv's misskey:id format of Ocean's parameter schemas.
var misskeyID = regexp.MustCompile(`^[a-zA-Z0-9]+$`)

// Webhook is a user webhook the fake Ocean holds itself (a "native" hook,
// as an Ocean without the sidecar keeps them in its webhook table).
type Webhook struct {
	ID, UserID, Name string
	On               []string
	URL, Secret      string
	Active           bool
	LatestSentAt     *time.Time
	LatestStatus     *int
}

// webhookView is a hook as Ocean's i/webhooks/list and show answer it
// (UserWebhook schema, key order kept).
type webhookView struct {
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

func (h *Webhook) view() webhookView {
	v := webhookView{ID: h.ID, UserID: h.UserID, Name: h.Name, On: nonNil(h.On), URL: h.URL, Secret: h.Secret,
		Active: h.Active, LatestStatus: h.LatestStatus}
	if h.LatestSentAt != nil {
		s := isoTime(*h.LatestSentAt)
		v.LatestSentAt = &s
	}
	return v
}

func (h *Webhook) clone() Webhook {
	c := *h
	c.On = slices.Clone(h.On)
	return c
}

// AddWebhook gives h.UserID the native hook h (a fresh id when h.ID is
// empty) and returns it as stored.
func (s *Server) AddWebhook(h Webhook) Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.ID == "" {
		h.ID = s.st.newID(s.now())
	}
	h.On = slices.Clone(h.On)
	s.st.webhooks = append(s.st.webhooks, &h)
	return h.clone()
}

// Webhooks returns userID's native hooks in creation order.
func (s *Server) Webhooks(userID string) []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Webhook
	for _, h := range s.st.webhooks {
		if h.UserID == userID {
			out = append(out, h.clone())
		}
	}
	return out
}

// NativeDeliveries returns how many deliveries the fake's own hooks fired
// (see fire). The count is taken when the event happens, before the
// delivery is sent, so it is final once the call that caused the event has
// been answered.
func (s *Server) NativeDeliveries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nativeSent
}

// fire delivers an event the way Ocean's UserWebhookService does: to every
// active native hook of userID whose `on` holds typ, one delivery each with
// its own eventId, posted in the background (Ocean queues them) with
// Ocean's headers (Misskey names, as this fork sends them) and envelope, and
// the hook's latestSentAt/latestStatus updated after the attempt. The fake
// fires `note` (to the author, on notes/create) and `follow`/`followed` (on
// a follow that takes effect at once); nothing else. Callers hold s.mu.
func (s *Server) fire(userID, typ string, body any) {
	if !s.nativeDeliveries {
		return
	}
	for _, h := range s.st.webhooks {
		if !h.Active || h.UserID != userID || !slices.Contains(h.On, typ) {
			continue
		}
		s.nativeSent++
		env, _ := json.Marshal(struct {
			Server    string `json:"server"`
			HookID    string `json:"hookId"`
			UserID    string `json:"userId"`
			EventID   string `json:"eventId"`
			CreatedAt int64  `json:"createdAt"`
			Type      string `json:"type"`
			Body      any    `json:"body"`
		}{s.URL, h.ID, userID, uuid.NewString(), s.now().UnixMilli(), typ, body})
		hook, to, secret := h, h.URL, h.Secret
		s.sending.Go(func() {
			status := s.send(to, hook.ID, secret, env)
			at := s.now()
			s.mu.Lock()
			hook.LatestSentAt, hook.LatestStatus = &at, &status
			s.mu.Unlock()
		})
	}
}

// send makes one delivery attempt and returns its status, 1 when no
// receiver answered.
func (s *Server) send(to, hookID, secret string, env []byte) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, bytes.NewReader(env))
	if err != nil {
		return 1
	}
	host := s.URL
	if u, err := url.Parse(s.URL); err == nil {
		host = u.Host
	}
	req.Header.Set("User-Agent", "Misskey-Hooks")
	req.Header.Set("X-Misskey-Host", host)
	req.Header.Set("X-Misskey-Hook-Id", hookID)
	req.Header.Set("X-Misskey-Hook-Secret", secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// webhookLimit is u's policies.webhookLimit (Ocean's default 3 when absent).
func (u *user) webhookLimit() int {
	raw, ok := u.me.get("policies")
	if !ok {
		return ocean.DefaultWebhookLimit
	}
	if l := gjson.GetBytes(raw, "webhookLimit"); l.Type == gjson.Number {
		return int(l.Int())
	}
	return ocean.DefaultWebhookLimit
}

func (u *user) isAdmin() bool {
	v, ok := u.me.get("isAdmin")
	return ok && string(v) == "true"
}

func (st *state) webhooksOf(userID string) []*Webhook {
	var out []*Webhook
	for _, h := range st.webhooks {
		if h.UserID == userID {
			out = append(out, h)
		}
	}
	return out
}

func (st *state) webhook(userID, id string) *Webhook {
	for _, h := range st.webhooks {
		if h.ID == id && h.UserID == userID {
			return h
		}
	}
	return nil
}

// adminTypes are the event types Ocean accepts in `on` for administrators only.
var adminTypes = []string{"reportCreated", "reportResolved", "reportAutoResolved"}

func hasAdminType(on []string) bool {
	return slices.ContainsFunc(on, func(t string) bool { return slices.Contains(adminTypes, t) })
}

// webhookIDParam checks the webhookId parameter as Ocean's schema does.
func webhookIDParam(p map[string]any) (string, *ocean.Error) {
	v, present := p["webhookId"]
	id, isString := v.(string)
	switch {
	case !present:
		return "", invalidParam("#/required", "must have required property 'webhookId'")
	case !isString:
		return "", invalidParam("#/properties/webhookId/type", "must be string")
	case !misskeyID.MatchString(id):
		return "", invalidParam("#/properties/webhookId/format", `must match format "misskey:id"`)
	}
	return id, nil
}

func stringsParam(p map[string]any, name string) ([]string, bool, bool) {
	raw, present := p[name]
	if !present {
		return nil, false, true
	}
	list, isList := raw.([]any)
	if !isList {
		return nil, true, false
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, isString := v.(string)
		if !isString {
			return nil, true, false
		}
		out = append(out, s)
	}
	return out, true, true
}

// apiWebhooksCreate answers i/webhooks/create: a request the capture holds,
// made by the recorded user, is answered as Ocean answered it (and its hook
// kept); any other creates a hook after Ocean's checks (admin-only types,
// policies.webhookLimit).
func (s *Server) apiWebhooksCreate(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		if c.Endpoint != r.endpoint || !sameParams(c.Request, r.params) || recordedCaller(c.Label) != r.caller.id {
			continue
		}
		if c.Status != http.StatusOK {
			return replayOf(c)
		}
		var v webhookView
		if err := json.Unmarshal(c.Response, &v); err != nil || s.st.webhook(r.caller.id, v.ID) != nil {
			break
		}
		s.st.webhooks = append(s.st.webhooks, &Webhook{ID: v.ID, UserID: v.UserID, Name: v.Name, On: v.On,
			URL: v.URL, Secret: v.Secret, Active: v.Active})
		return replayOf(c)
	}
	name, _ := r.params["name"].(string)
	to, _ := r.params["url"].(string)
	secret, _ := r.params["secret"].(string)
	on, present, okOn := stringsParam(r.params, "on")
	if name == "" || to == "" || !present || !okOn {
		return fail(ocean.ErrInvalidParam)
	}
	if len(s.st.webhooksOf(r.caller.id)) >= r.caller.webhookLimit() {
		return fail(ocean.ErrTooManyWebhooks)
	}
	if hasAdminType(on) && !r.caller.isAdmin() {
		return fail(ocean.ErrYouAreNotAdmin)
	}
	h := &Webhook{ID: s.st.newID(s.now()), UserID: r.caller.id, Name: name, On: on, URL: to, Secret: secret, Active: true}
	s.st.webhooks = append(s.st.webhooks, h)
	return ok(h.view())
}

// apiWebhooksList answers i/webhooks/list: the caller's native hooks.
func (s *Server) apiWebhooksList(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	views := []webhookView{}
	for _, h := range s.st.webhooksOf(r.caller.id) {
		views = append(views, h.view())
	}
	return ok(views)
}

// apiWebhooksShow answers i/webhooks/show for the caller's native hooks.
func (s *Server) apiWebhooksShow(r *request) reply {
	id, e := webhookIDParam(r.params)
	if e != nil {
		return fail(e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.st.webhook(r.caller.id, id)
	if h == nil {
		return fail(ocean.ErrNoSuchWebhookShow)
	}
	return ok(h.view())
}

// apiWebhooksUpdate answers Ocean's own i/webhooks/update in this fork's
// order: the webhookId parameter as Ocean's schema checks it, then
// WEBHOOK_LIMIT_EXCEEDED for a caller holding more hooks than their
// policies.webhookLimit, then NO_SUCH_WEBHOOK for an id that is not one of
// the caller's native hooks (the sidecar's hooks live in the sidecar), then
// YOU_ARE_NOT_ADMIN, then the change (omitted fields unchanged, a null
// secret is "") and 204.
func (s *Server) apiWebhooksUpdate(r *request) reply {
	id, e := webhookIDParam(r.params)
	if e != nil {
		return fail(e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.st.webhooksOf(r.caller.id)) > r.caller.webhookLimit() {
		return fail(ocean.ErrWebhookLimitExceeded)
	}
	h := s.st.webhook(r.caller.id, id)
	if h == nil {
		return fail(ocean.ErrNoSuchWebhookUpdate)
	}
	on, hasOn, okOn := stringsParam(r.params, "on")
	if !okOn {
		return fail(ocean.ErrInvalidParam)
	}
	if hasOn && hasAdminType(on) && !r.caller.isAdmin() {
		return fail(ocean.ErrYouAreNotAdmin)
	}
	if v, ok := r.params["name"].(string); ok {
		h.Name = v
	}
	if v, ok := r.params["url"].(string); ok {
		h.URL = v
	}
	if v, present := r.params["secret"]; present {
		h.Secret, _ = v.(string)
	}
	if hasOn {
		h.On = on
	}
	if v, ok := r.params["active"].(bool); ok {
		h.Active = v
	}
	return noContent()
}

// invalidParam is Ocean's INVALID_PARAM with Ajv's first error.
func invalidParam(param, reason string) *ocean.Error {
	return ocean.ErrInvalidParam.With(map[string]any{"param": param, "reason": reason})
}

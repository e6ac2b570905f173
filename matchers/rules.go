package matchers

import (
	"context"
	"fmt"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// rule is one row of the table: an endpoint and how its events are derived.
type rule struct {
	// endpoint without the /api/ prefix.
	endpoint string
	// causes lists every event type the endpoint can cause; the tap's gate
	// is AnySubscribed(causes...).
	causes []string
	// answers says what Ocean's 2xx answer is: a JSON object (checked before
	// derive runs: anything else means no event), nothing (204), or either
	// (derive checks which).
	answers answerKind
	// before, if set, runs before the call is forwarded and may leave state
	// in obs.State for derive.
	before func(c *call)
	// derive appends the events of a 2xx call to c.events. Its error means
	// Ocean's answer was unusable (no event at all); a failed extra read only
	// skips the events that needed it, via c.skip.
	derive func(c *call) error
}

type answerKind int

const (
	answersObject answerKind = iota
	answersNothing
	answersObjectOrNothing
)

// table maps each tapped endpoint to its rule. A new endpoint is a new row.
var table = []rule{
	{
		endpoint: "notes/create",
		answers:  answersObjectOrNothing,
		causes:   []string{webhook.Note, webhook.Reply, webhook.Renote, webhook.Mention},
		derive:   deriveNotesCreate,
	},
	{
		endpoint: "following/create",
		causes:   []string{webhook.Follow, webhook.Followed},
		derive:   deriveFollowingCreate,
	},
	{
		endpoint: "following/delete",
		causes:   []string{webhook.Unfollow},
		derive:   deriveFollowingDelete,
	},
	{
		endpoint: "following/invalidate",
		causes:   []string{webhook.Unfollow},
		derive:   deriveFollowingInvalidate,
	},
	{
		endpoint: "following/requests/accept",
		answers:  answersNothing,
		causes:   []string{webhook.Follow, webhook.Followed},
		derive:   deriveRequestAccept,
	},
	{
		endpoint: "following/requests/reject",
		answers:  answersNothing,
		causes:   []string{webhook.Unfollow},
		derive:   deriveRequestReject,
	},
	{
		endpoint: "blocking/create",
		causes:   []string{webhook.Unfollow},
		before:   beforeBlockingCreate,
		derive:   deriveBlockingCreate,
	},
	{
		endpoint: "notes/reactions/create",
		answers:  answersNothing,
		causes:   []string{webhook.Reaction},
		derive:   deriveReactionCreate,
	},
}

// call is the derivation of one tapped API call.
type call struct {
	ctx    context.Context
	e      *Engine
	r      *rule
	obs    *proxy.Observation
	answer gjson.Result // Ocean's answer, for rules whose answer is an object
	events []webhook.Event

	meDone bool
	meID   string
	meErr  error

	// followers caches, per user, whether they follow the caller (hideNote).
	followers map[string]bool

	// readCtx bounds all extra reads of the call together; made on the
	// first read, so that a call needing none pays nothing for it.
	readCtx    context.Context
	readCancel context.CancelFunc
}

func (c *call) reads() context.Context {
	if c.readCtx == nil {
		c.readCtx, c.readCancel = context.WithTimeout(c.ctx, c.e.readTimeout)
	}
	return c.readCtx
}

func (c *call) close() {
	if c.readCancel != nil {
		c.readCancel()
	}
}

// wants reports whether userID has an active hook for typ; "" never does.
func (c *call) wants(userID, typ string) bool {
	return userID != "" && c.e.subs.Subscribed(userID, typ)
}

func (c *call) emit(typ, userID string, body []byte) {
	c.events = append(c.events, webhook.Event{Type: typ, UserID: userID, Body: body})
}

// nothing records a call that, by design, causes no event: Ocean's answer
// shows nothing to derive from, or Ocean fired nothing for it.
func (c *call) nothing(reason string) {
	c.e.m.nothing.WithLabelValues(c.r.endpoint, reason).Inc()
	c.e.log.DebugContext(c.ctx, "no events for this call", "endpoint", c.r.endpoint, "reason", reason)
}

// skip counts n events lost because a read they needed failed.
func (c *call) skip(n int, what string, err error) {
	reason := readFailureReason(err)
	c.e.m.skipped.WithLabelValues(c.r.endpoint, reason).Add(float64(n))
	c.e.log.WarnContext(c.ctx, "event skipped: extra Ocean read failed",
		"endpoint", c.r.endpoint, "read", what, "events", n, "reason", reason, "err", err)
}

// callerID is the caller's user id, from the client's cached token lookup.
func (c *call) callerID() (string, error) {
	if !c.meDone {
		c.meDone = true
		me, err := c.e.oc.Me(c.reads(), c.obs.Token)
		switch {
		case err != nil:
			c.meErr = fmt.Errorf("me: %w", err)
		case me.ID == "":
			c.meErr = fmt.Errorf("me: empty user id: %w", errMalformed)
		default:
			c.meID = me.ID
		}
	}
	return c.meID, c.meErr
}

// read posts params to an Ocean endpoint with the caller's token and returns
// the answer, which must be a JSON object or array.
func (c *call) read(endpoint string, params any) (gjson.Result, error) {
	body, err := c.e.oc.Call(c.reads(), endpoint, c.obs.Token, params)
	if err != nil {
		return gjson.Result{}, fmt.Errorf("%s: %w", endpoint, err)
	}
	if !validJSON(body) {
		return gjson.Result{}, fmt.Errorf("%s: invalid JSON: %w", endpoint, errMalformed)
	}
	res := gjson.ParseBytes(body)
	if !res.IsObject() && !res.IsArray() {
		return gjson.Result{}, fmt.Errorf("%s: neither object nor array: %w", endpoint, errMalformed)
	}
	return res, nil
}

// readObject is read for answers that must be one object.
func (c *call) readObject(endpoint string, params any) (gjson.Result, error) {
	res, err := c.read(endpoint, params)
	if err == nil && !res.IsObject() {
		err = fmt.Errorf("%s: not an object: %w", endpoint, errMalformed)
	}
	return res, err
}

// requestString returns a string field of the request body, "" when the body
// is not a JSON object or the field is not a string.
func (c *call) requestString(field string) string {
	if !gjson.ValidBytes(c.obs.Request) {
		return ""
	}
	v := gjson.GetBytes(c.obs.Request, field)
	if v.Type != gjson.String {
		return ""
	}
	return v.Str
}

// response parses Ocean's answer, which must be a JSON object.
func (c *call) response() (gjson.Result, error) {
	if !validJSON(c.obs.Response) {
		return gjson.Result{}, fmt.Errorf("response is not JSON: %w", errMalformed)
	}
	res := gjson.ParseBytes(c.obs.Response)
	if !res.IsObject() {
		return gjson.Result{}, fmt.Errorf("response is not an object: %w", errMalformed)
	}
	return res, nil
}

// validJSON reports whether b is JSON in UTF-8, as every Ocean answer is:
// event bodies copy its bytes, so they must be fit to send on as they are.
func validJSON(b []byte) bool {
	return gjson.ValidBytes(b) && utf8.Valid(b)
}

// Package ocean speaks Ocean's API language: its error format and known error
// codes, a small client for the reads the sidecar makes of Ocean (who is this
// token, public user views, relations), and the rules of Ocean that the
// sidecar reproduces, each in one place (how a note is hidden from a viewer,
// how long a notes/create is answered with the earlier note).
package ocean

import (
	"bytes"
	"cmp"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
)

// Error is an Ocean API error, written as {"error":{message,code,id,kind,info?}}.
type Error struct {
	Message string         `json:"message"`
	Code    string         `json:"code"`
	ID      string         `json:"id"`
	Kind    string         `json:"kind"`
	Info    map[string]any `json:"info,omitempty"`
	// Status is the HTTP status; zero means the kind decides (client 400,
	// permission 403, server 500).
	Status int `json:"-"`
	// Header holds extra response headers (WWW-Authenticate, Retry-After).
	Header http.Header `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// infoOrder is the order Ocean writes the keys of info in: an internal
// error's {message, code, id}, Ajv's {param, reason}. Other keys follow,
// sorted.
var infoOrder = []string{"message", "code", "id", "param", "reason"}

// MarshalJSON writes e with Ocean's key order, inside info too.
func (e *Error) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range [...][2]string{{"message", e.Message}, {"code", e.Code}, {"id", e.ID}, {"kind", e.Kind}} {
		if i > 0 {
			b.WriteByte(',')
		}
		_ = writeValue(&b, f[0])
		b.WriteByte(':')
		_ = writeValue(&b, f[1])
	}
	if len(e.Info) > 0 {
		rank := func(k string) int {
			if i := slices.Index(infoOrder, k); i >= 0 {
				return i
			}
			return len(infoOrder)
		}
		keys := slices.Collect(maps.Keys(e.Info))
		slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b)) })
		b.WriteString(`,"info":{`)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			_ = writeValue(&b, k)
			b.WriteByte(':')
			if err := writeValue(&b, e.Info[k]); err != nil {
				return nil, err
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeValue encodes v as JSON.stringify would: no HTML escaping.
func writeValue(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// HTTPStatus is the status Ocean answers the error with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Kind {
	case "permission":
		return http.StatusForbidden
	case "server":
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

// wwwAuthenticate is the challenge Ocean's ApiCallService adds to an error
// that does not carry its own: the bare realm for a 401, invalid_request for
// any other client error, insufficient_scope for PERMISSION_DENIED.
func (e *Error) wwwAuthenticate() string {
	switch {
	case e.HTTPStatus() == http.StatusUnauthorized:
		return `Bearer realm="Misskey"`
	case e.Kind == "client":
		return `Bearer realm="Misskey", error="invalid_request", error_description="` + e.Message + `"`
	case e.Kind == "permission" && e.Code == "PERMISSION_DENIED":
		return `Bearer realm="Misskey", error="insufficient_scope", error_description="` + e.Message + `"`
	}
	return ""
}

// With returns a copy of e with info set.
func (e *Error) With(info map[string]any) *Error {
	c := *e
	c.Info = info
	return &c
}

// Write sends e the way Ocean does, with Ocean's Cache-Control header.
func Write(w http.ResponseWriter, e *Error) {
	var buf bytes.Buffer
	_ = writeValue(&buf, struct {
		Error *Error `json:"error"`
	}{e})
	body := buf.Bytes()
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	if h.Get("Www-Authenticate") == "" {
		if v := e.wwwAuthenticate(); v != "" {
			h.Set("Www-Authenticate", v)
		}
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "private, max-age=0, must-revalidate")
	w.WriteHeader(e.HTTPStatus())
	_, _ = w.Write(body)
}

// Errors common to every endpoint (server/api/error.ts, ApiCallService).
var (
	ErrInvalidParam = &Error{Message: "Invalid param.", Code: "INVALID_PARAM",
		ID: "3d81ceae-475f-4600-b2a8-2bc116157532", Kind: "client"}
	ErrCredentialRequired = &Error{Message: "Credential required.", Code: "CREDENTIAL_REQUIRED",
		ID: "1384574d-a912-4b81-8601-c7b1c4085df1", Kind: "client", Status: http.StatusUnauthorized}
	ErrAuthenticationFailed = &Error{Message: "Authentication failed. Please ensure your token is correct.",
		Code: "AUTHENTICATION_FAILED", ID: "b0a7f5f8-dc2f-4171-b91f-de88ad238e14", Kind: "client",
		Status: http.StatusUnauthorized,
		Header: http.Header{"Www-Authenticate": {`Bearer realm="Misskey", error="invalid_token", error_description="Authentication failed. Please ensure your token is correct."`}}}
	ErrPermissionDenied = &Error{Message: "Your app does not have the necessary permissions to use this endpoint.",
		Code: "PERMISSION_DENIED", ID: "1370e5b7-d4eb-4566-bb1d-7748ee6a1838", Kind: "permission"}
	ErrInternal = &Error{Message: "Internal error occurred. Please contact us if the error persists.",
		Code: "INTERNAL_ERROR", ID: "5d37dbcb-891e-41ca-a3d6-e690c97775ac", Kind: "server"}
	// ErrMethodNotAllowed is not an Ocean error: Ocean answers GET on a
	// POST-only endpoint with a bare 405 and an empty body (ApiServerService).
	ErrMethodNotAllowed = &Error{Message: "Method not allowed.", Code: "METHOD_NOT_ALLOWED",
		ID: "7d4d6f8a-0b4e-4f2c-9d5a-6c2b1e7a3f90", Kind: "client", Status: http.StatusMethodNotAllowed}
	// ErrUnknownEndpoint is Ocean's answer to GET /api/<unknown>; other methods
	// get Fastify's own 404 body (see hooks).
	ErrUnknownEndpoint = &Error{Message: "Unknown API endpoint.", Code: "UNKNOWN_API_ENDPOINT",
		ID: "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1", Kind: "client", Status: http.StatusNotFound}
	// ErrAccessDenied answers a `secure` endpoint (i/webhooks/test) called
	// without a native (16-character) token.
	ErrAccessDenied = &Error{Message: "Access denied.", Code: "ACCESS_DENIED",
		ID: "56f35758-7dd5-468b-8439-5d6fb8ec9b8e", Kind: "client"}
	ErrRateLimitExceeded = &Error{Message: "Rate limit exceeded. Please try again later.",
		Code: "RATE_LIMIT_EXCEEDED", ID: "d5826d14-3982-4d2e-8011-b9e9f02499ef", Kind: "client",
		Status: http.StatusTooManyRequests}
)

// Errors the sidecar itself produces when Ocean cannot be reached.
var (
	ErrUpstreamUnavailable = &Error{Message: "Ocean is not reachable through the oceanhooks sidecar.",
		Code: "UPSTREAM_UNAVAILABLE", ID: "9b0c7f1e-6a53-4c8e-a0f4-3d2b8e5c1a77", Kind: "server",
		Status: http.StatusBadGateway}
	ErrUpstreamTimeout = &Error{Message: "Ocean did not answer in time.",
		Code: "UPSTREAM_TIMEOUT", ID: "4e1d2a6b-8c3f-4b7e-9a05-7f6c1d2e3b48", Kind: "server",
		Status: http.StatusGatewayTimeout}
)

// Errors of the webhook management endpoints (endpoints/i/webhooks/*).
var (
	ErrTooManyWebhooks = &Error{Message: "You cannot create webhook any more.", Code: "TOO_MANY_WEBHOOKS",
		ID: "87a9bb19-111e-4e37-81d3-a3e7426453b0", Kind: "client"}
	ErrYouAreNotAdmin = &Error{Message: "You are not an administrator.", Code: "YOU_ARE_NOT_ADMIN",
		ID: "26601bea-079b-4782-8dac-071febe2acf9", Kind: "client"}
	ErrNoSuchWebhookShow = &Error{Message: "No such webhook.", Code: "NO_SUCH_WEBHOOK",
		ID: "50f614d9-3047-4f7e-90d8-ad6b2d5fb098", Kind: "client"}
	ErrNoSuchWebhookUpdate = &Error{Message: "No such webhook.", Code: "NO_SUCH_WEBHOOK",
		ID: "fb0fea69-da18-45b1-828d-bd4fd1612518", Kind: "client"}
	// ErrWebhookLimitExceeded is Ocean's i/webhooks/update (this fork) for a
	// user who holds more hooks in Ocean than policies.webhookLimit: its
	// handler checks the count before it looks for the hook.
	ErrWebhookLimitExceeded = &Error{Message: "You cannot update the webhook because you have exceeded the limit of webhooks.",
		Code: "WEBHOOK_LIMIT_EXCEEDED", ID: "a261cb2d-867d-47a8-a743-8bbd2c1438b1", Kind: "client"}
	ErrNoSuchWebhookDelete = &Error{Message: "No such webhook.", Code: "NO_SUCH_WEBHOOK",
		ID: "bae73e5a-5522-4965-ae19-3a8688e71d82", Kind: "client"}
	ErrNoSuchWebhookTest = &Error{Message: "No such webhook.", Code: "NO_SUCH_WEBHOOK",
		ID: "0c52149c-e913-18f8-5dc7-74870bfe0cf9", Kind: "client"}
	// Our extensions (i/webhooks/deliveries, i/webhooks/redeliver).
	ErrNoSuchWebhookDeliveries = &Error{Message: "No such webhook.", Code: "NO_SUCH_WEBHOOK",
		ID: "6a3f5c1e-2b7d-4e89-9c40-1d8e7f2a5b63", Kind: "client"}
	ErrNoSuchWebhookRedeliver = &Error{Message: "No such webhook.", Code: "NO_SUCH_WEBHOOK",
		ID: "c2e8a4d1-7f35-4b6a-8e19-5d0c3b7a9f24", Kind: "client"}
	ErrNoSuchDelivery = &Error{Message: "No such delivery.", Code: "NO_SUCH_DELIVERY",
		ID: "e7b1d9c3-4a62-4f8e-b5d0-2c9a6e3f1b87", Kind: "client"}
)

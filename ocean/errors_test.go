package ocean

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		err        *Error
		wantStatus int
		wantBody   string
		wantAuth   string
	}{
		{"client error: invalid_request challenge", ErrInvalidParam.With(map[string]any{"param": "#/required", "reason": "must have required property 'name'"}),
			400, `{"error":{"message":"Invalid param.","code":"INVALID_PARAM","id":"3d81ceae-475f-4600-b2a8-2bc116157532","kind":"client","info":{"param":"#/required","reason":"must have required property 'name'"}}}`,
			`Bearer realm="Misskey", error="invalid_request", error_description="Invalid param."`},
		{"401: the bare realm", ErrCredentialRequired, 401,
			`{"error":{"message":"Credential required.","code":"CREDENTIAL_REQUIRED","id":"1384574d-a912-4b81-8601-c7b1c4085df1","kind":"client"}}`,
			`Bearer realm="Misskey"`},
		{"own header kept", ErrAuthenticationFailed, 401,
			`{"error":{"message":"Authentication failed. Please ensure your token is correct.","code":"AUTHENTICATION_FAILED","id":"b0a7f5f8-dc2f-4171-b91f-de88ad238e14","kind":"client"}}`,
			`Bearer realm="Misskey", error="invalid_token", error_description="Authentication failed. Please ensure your token is correct."`},
		{"permission denied: insufficient_scope", ErrPermissionDenied, 403,
			`{"error":{"message":"Your app does not have the necessary permissions to use this endpoint.","code":"PERMISSION_DENIED","id":"1370e5b7-d4eb-4566-bb1d-7748ee6a1838","kind":"permission"}}`,
			`Bearer realm="Misskey", error="insufficient_scope", error_description="Your app does not have the necessary permissions to use this endpoint."`},
		{"server error: no challenge", ErrUpstreamUnavailable, 502,
			`{"error":{"message":"Ocean is not reachable through the oceanhooks sidecar.","code":"UPSTREAM_UNAVAILABLE","id":"9b0c7f1e-6a53-4c8e-a0f4-3d2b8e5c1a77","kind":"server"}}`, ""},
		{"unknown endpoint", ErrUnknownEndpoint, 404,
			`{"error":{"message":"Unknown API endpoint.","code":"UNKNOWN_API_ENDPOINT","id":"2ca3b769-540a-4f08-9dd5-b5a825b6d0f1","kind":"client"}}`,
			`Bearer realm="Misskey", error="invalid_request", error_description="Unknown API endpoint."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, tt.err)
			assert.Equal(t, tt.wantStatus, rec.Code)
			assert.JSONEq(t, tt.wantBody, rec.Body.String())
			assert.Equal(t, tt.wantAuth, rec.Header().Get("WWW-Authenticate"))
			assert.Equal(t, "private, max-age=0, must-revalidate", rec.Header().Get("Cache-Control"))
			assert.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
		})
	}
	assert.Empty(t, ErrInvalidParam.Header, "Write does not change the shared values")
}

func TestErrorKeyOrderIsOceans(t *testing.T) {
	// As captured from Ocean (i/webhooks/test with an admin type).
	want := `{"error":{"message":"Internal error occurred. Please contact us if the error persists.","code":"INTERNAL_ERROR",` +
		`"id":"5d37dbcb-891e-41ca-a3d6-e690c97775ac","kind":"server","info":{"message":"Unhandled webhook type: reportCreated",` +
		`"code":"Error","id":"b8370a3f-56ed-4747-b066-8294271f06e8"}}}`
	rec := httptest.NewRecorder()
	Write(rec, ErrInternal.With(map[string]any{"id": "b8370a3f-56ed-4747-b066-8294271f06e8", "code": "Error",
		"message": "Unhandled webhook type: reportCreated"}))
	assert.Equal(t, want, rec.Body.String())

	rec = httptest.NewRecorder()
	Write(rec, ErrInvalidParam.With(map[string]any{"reason": "must be string", "param": "#/properties/url/type", "z": 1, "a": "<&>"}))
	assert.Equal(t, `{"error":{"message":"Invalid param.","code":"INVALID_PARAM","id":"3d81ceae-475f-4600-b2a8-2bc116157532",`+
		`"kind":"client","info":{"param":"#/properties/url/type","reason":"must be string","a":"<&>","z":1}}}`, rec.Body.String())
}

package hooks

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

func invalidParamBody(param, reason string) string {
	return `{"error":{"message":"Invalid param.","code":"INVALID_PARAM","id":"3d81ceae-475f-4600-b2a8-2bc116157532","kind":"client",` +
		`"info":{"param":"` + param + `","reason":"` + reason + `"}}}`
}

// TestBadInputNeverCrashesOrHalfWrites sends every kind of malformed call
// and checks Ocean's answer and that the store did not change.
func TestBadInputNeverCrashesOrHalfWrites(t *testing.T) {
	h := newHarness(t)
	bobs := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "https://bob.example", "secret": "s", "on": []string{"note"}})
	id := bobs.ID
	long := func(n int) string { return strings.Repeat("x", n) }
	const fstInvalidJSON = `{"statusCode":400,"code":"FST_ERR_CTP_INVALID_JSON_BODY","error":"Bad Request","message":"Body is not valid JSON but content-type is set to 'application/json'"}`

	tests := []struct {
		name        string
		endpoint    string
		contentType string // default application/json
		body        string
		status      int
		want        string // JSON, or "" for an empty body
	}{
		// create
		{name: "create without name", endpoint: "create", body: `{"url":"u","on":[]}`,
			status: 400, want: invalidParamBody("#/required", "must have required property 'name'")},
		{name: "create without anything", endpoint: "create", body: `{}`,
			status: 400, want: invalidParamBody("#/required", "must have required property 'name'")},
		{name: "create without on", endpoint: "create", body: `{"name":"n","url":"u"}`,
			status: 400, want: invalidParamBody("#/required", "must have required property 'on'")},
		{name: "create name is a number", endpoint: "create", body: `{"name":1,"url":"u","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/name/type", "must be string")},
		{name: "create name is null", endpoint: "create", body: `{"name":null,"url":"u","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/name/type", "must be string")},
		{name: "create empty name", endpoint: "create", body: `{"name":"","url":"u","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/name/minLength", "must NOT have fewer than 1 characters")},
		{name: "create name of 101 characters", endpoint: "create", body: `{"name":"` + long(101) + `","url":"u","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/name/maxLength", "must NOT have more than 100 characters")},
		{name: "create url of 1025 characters", endpoint: "create", body: `{"name":"n","url":"` + long(1025) + `","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/url/maxLength", "must NOT have more than 1024 characters")},
		{name: "create empty url", endpoint: "create", body: `{"name":"n","url":"","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/url/minLength", "must NOT have fewer than 1 characters")},
		{name: "create secret of 1025 characters", endpoint: "create", body: `{"name":"n","url":"u","secret":"` + long(1025) + `","on":[]}`,
			status: 400, want: invalidParamBody("#/properties/secret/maxLength", "must NOT have more than 1024 characters")},
		{name: "create null secret", endpoint: "create", body: `{"name":"n","url":"u","secret":null,"on":[]}`,
			status: 400, want: invalidParamBody("#/properties/secret/type", "must be string")},
		{name: "create on is an object", endpoint: "create", body: `{"name":"n","url":"u","on":{"0":"note"}}`,
			status: 400, want: invalidParamBody("#/properties/on/type", "must be array")},
		{name: "create on is a string", endpoint: "create", body: `{"name":"n","url":"u","on":"note"}`,
			status: 400, want: invalidParamBody("#/properties/on/type", "must be array")},
		{name: "create on holds a number", endpoint: "create", body: `{"name":"n","url":"u","on":["note",1]}`,
			status: 400, want: invalidParamBody("#/properties/on/items/type", "must be string")},
		{name: "create unknown on value", endpoint: "create", body: `{"name":"n","url":"u","on":["note","boost"]}`,
			status: 400, want: invalidParamBody("#/properties/on/items/enum", "must be equal to one of the allowed values")},
		{name: "create on value of another case", endpoint: "create", body: `{"name":"n","url":"u","on":["Note"]}`,
			status: 400, want: invalidParamBody("#/properties/on/items/enum", "must be equal to one of the allowed values")},
		{name: "the first error in property order wins", endpoint: "create", body: `{"on":[1],"url":"","name":""}`,
			status: 400, want: invalidParamBody("#/properties/name/minLength", "must NOT have fewer than 1 characters")},
		// whole bodies
		{name: "array body", endpoint: "create", body: `[]`, status: 400, want: invalidParamBody("#/type", "must be object")},
		{name: "null body", endpoint: "list", body: `null`, status: 400, want: invalidParamBody("#/type", "must be object")},
		{name: "string body", endpoint: "list", body: `"x"`, status: 400, want: invalidParamBody("#/type", "must be object")},
		{name: "number body", endpoint: "list", body: `12`, status: 400, want: invalidParamBody("#/type", "must be object")},
		{name: "text/plain body", endpoint: "create", contentType: "text/plain", body: `{"name":"n","url":"u","on":[]}`,
			status: 400, want: invalidParamBody("#/type", "must be object")},
		{name: "invalid JSON", endpoint: "create", body: `{"name":"n",`, status: 400, want: fstInvalidJSON},
		{name: "not JSON at all", endpoint: "create", body: `name=n`, status: 400, want: fstInvalidJSON},
		{name: "trailing garbage", endpoint: "create", body: `{"name":"n","url":"u","on":[]} x`, status: 400, want: fstInvalidJSON},
		{name: "two values", endpoint: "create", body: `{} {}`, status: 400, want: fstInvalidJSON},
		{name: "prototype poisoning", endpoint: "create", body: `{"name":"n","url":"u","on":[],"__proto__":{"x":1}}`,
			status: 400, want: fstInvalidJSON},
		{name: "constructor poisoning", endpoint: "create", body: `{"name":"n","url":"u","on":[],"a":{"constructor":{"prototype":{}}}}`,
			status: 400, want: fstInvalidJSON},
		{name: "empty JSON body", endpoint: "create", body: ``, status: 400,
			want: `{"statusCode":400,"code":"FST_ERR_CTP_EMPTY_JSON_BODY","error":"Bad Request","message":"Body cannot be empty when content-type is set to 'application/json'"}`},
		{name: "form body", endpoint: "create", contentType: "application/x-www-form-urlencoded", body: `name=n`, status: 415,
			want: `{"statusCode":415,"code":"FST_ERR_CTP_INVALID_MEDIA_TYPE","error":"Unsupported Media Type","message":"Unsupported Media Type: application/x-www-form-urlencoded"}`},
		{name: "10 MB body", endpoint: "create", body: `{"name":"` + long(10<<20) + `","url":"u","on":[]}`, status: 413,
			want: `{"statusCode":413,"code":"FST_ERR_CTP_BODY_TOO_LARGE","error":"Payload Too Large","message":"Request body is too large"}`},
		{name: "body just over 1 MiB", endpoint: "create", body: `{"name":"n","url":"u","on":[],"pad":"` + long(1<<20) + `"}`, status: 413,
			want: `{"statusCode":413,"code":"FST_ERR_CTP_BODY_TOO_LARGE","error":"Payload Too Large","message":"Request body is too large"}`},
		// ids
		{name: "show webhookId with symbols", endpoint: "show", body: `{"webhookId":"../` + id + `"}`,
			status: 400, want: invalidParamBody("#/properties/webhookId/format", `must match format \"misskey:id\"`)},
		{name: "update webhookId with a space", endpoint: "update", body: `{"webhookId":"` + id + ` ","name":"x"}`,
			status: 400, want: invalidParamBody("#/properties/webhookId/format", `must match format \"misskey:id\"`)},
		{name: "delete empty webhookId", endpoint: "delete", body: `{"webhookId":""}`,
			status: 400, want: invalidParamBody("#/properties/webhookId/format", `must match format \"misskey:id\"`)},
		{name: "delete webhookId is a number", endpoint: "delete", body: `{"webhookId":12}`,
			status: 400, want: invalidParamBody("#/properties/webhookId/type", "must be string")},
		{name: "test webhookId with symbols", endpoint: "test", body: `{"webhookId":"` + id + `;drop","type":"note"}`,
			status: 400, want: invalidParamBody("#/properties/webhookId/format", `must match format \"misskey:id\"`)},
		{name: "show without webhookId", endpoint: "show", body: `{"id":"` + id + `"}`,
			status: 400, want: invalidParamBody("#/required", "must have required property 'webhookId'")},
		// update
		{name: "update active is a string", endpoint: "update", body: `{"webhookId":"` + id + `","active":"false"}`,
			status: 400, want: invalidParamBody("#/properties/active/type", "must be boolean")},
		{name: "update name is null", endpoint: "update", body: `{"webhookId":"` + id + `","name":null}`,
			status: 400, want: invalidParamBody("#/properties/name/type", "must be string")},
		{name: "update secret is a number", endpoint: "update", body: `{"webhookId":"` + id + `","secret":5}`,
			status: 400, want: invalidParamBody("#/properties/secret/type", "must be string")},
		{name: "update unknown on value", endpoint: "update", body: `{"webhookId":"` + id + `","on":["note","x"]}`,
			status: 400, want: invalidParamBody("#/properties/on/items/enum", "must be equal to one of the allowed values")},
		{name: "update on is null", endpoint: "update", body: `{"webhookId":"` + id + `","on":null}`,
			status: 400, want: invalidParamBody("#/properties/on/type", "must be array")},
		{name: "update url too long, valid name first", endpoint: "update", body: `{"webhookId":"` + id + `","name":"ok","url":"` + long(1025) + `"}`,
			status: 400, want: invalidParamBody("#/properties/url/maxLength", "must NOT have more than 1024 characters")},
		// test
		{name: "test without type", endpoint: "test", body: `{"webhookId":"` + id + `"}`,
			status: 400, want: invalidParamBody("#/required", "must have required property 'type'")},
		{name: "test unknown type", endpoint: "test", body: `{"webhookId":"` + id + `","type":"boost"}`,
			status: 400, want: invalidParamBody("#/properties/type/enum", "must be equal to one of the allowed values")},
		{name: "test override is a string", endpoint: "test", body: `{"webhookId":"` + id + `","type":"note","override":"x"}`,
			status: 400, want: invalidParamBody("#/properties/override/type", "must be object")},
		{name: "test override is null", endpoint: "test", body: `{"webhookId":"` + id + `","type":"note","override":null}`,
			status: 400, want: invalidParamBody("#/properties/override/type", "must be object")},
		{name: "test override url is a number", endpoint: "test", body: `{"webhookId":"` + id + `","type":"note","override":{"url":1}}`,
			status: 400, want: invalidParamBody("#/properties/override/properties/url/type", "must be string")},
		// deliveries
		{name: "deliveries limit 0", endpoint: "deliveries", body: `{"webhookId":"` + id + `","limit":0}`,
			status: 400, want: invalidParamBody("#/properties/limit/minimum", "must be >= 1")},
		{name: "deliveries limit 101", endpoint: "deliveries", body: `{"webhookId":"` + id + `","limit":101}`,
			status: 400, want: invalidParamBody("#/properties/limit/maximum", "must be <= 100")},
		{name: "deliveries limit 1.5", endpoint: "deliveries", body: `{"webhookId":"` + id + `","limit":1.5}`,
			status: 400, want: invalidParamBody("#/properties/limit/type", "must be integer")},
		{name: "deliveries limit as a string", endpoint: "deliveries", body: `{"webhookId":"` + id + `","limit":"10"}`,
			status: 400, want: invalidParamBody("#/properties/limit/type", "must be integer")},
		{name: "deliveries huge limit", endpoint: "deliveries", body: `{"webhookId":"` + id + `","limit":1e300}`,
			status: 400, want: invalidParamBody("#/properties/limit/maximum", "must be <= 100")},
		{name: "deliveries untilId with symbols", endpoint: "deliveries", body: `{"webhookId":"` + id + `","untilId":"a-b"}`,
			status: 400, want: invalidParamBody("#/properties/untilId/format", `must match format \"misskey:id\"`)},
		{name: "redeliver deliveryId with symbols", endpoint: "redeliver", body: `{"webhookId":"` + id + `","deliveryId":"*"}`,
			status: 400, want: invalidParamBody("#/properties/deliveryId/format", `must match format \"misskey:id\"`)},
	}
	before := h.all()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, h.url+"/api/i/webhooks/"+tt.endpoint, strings.NewReader(tt.body))
			require.NoError(t, err)
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Authorization", "Bearer "+oceantest.TokenBob)
			res := h.do(req)
			assert.Equal(t, tt.status, res.status)
			if tt.want == "" {
				assert.Empty(t, res.body)
			} else {
				assert.JSONEq(t, tt.want, res.body)
			}
			assert.Equal(t, before, h.all(), "the store is unchanged")
		})
	}
	assert.Empty(t, h.deliveries.sent())
	assert.Empty(t, h.deliveries.cancelled)
	requireIndexMatchesStore(t, h.store)
}

// chunked hides its length, so that the server must count what it reads.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestOversizedChunkedBody(t *testing.T) {
	h := newHarness(t)
	body := `{"name":"` + strings.Repeat("x", 10<<20) + `","url":"u","on":[]}`
	req, err := http.NewRequest(http.MethodPost, h.url+"/api/i/webhooks/create", chunked{strings.NewReader(body)})
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+oceantest.TokenBob)
	res := h.do(req)
	assert.Equal(t, http.StatusRequestEntityTooLarge, res.status)
	assert.Contains(t, res.body, "FST_ERR_CTP_BODY_TOO_LARGE")
	assert.Empty(t, h.all())
}

func TestBodyOfExactlyOneMiBIsRead(t *testing.T) {
	h := newHarness(t)
	prefix := `{"name":"n","url":"u","on":[],"pad":"`
	body := prefix + strings.Repeat("x", maxBodyBytes-len(prefix)-2) + `"}`
	require.Len(t, body, maxBodyBytes)
	res := h.call("create", oceantest.TokenBob, body)
	assert.Equal(t, http.StatusOK, res.status, "the limit is inclusive")
}

func TestLengthsCountCharactersNotBytes(t *testing.T) {
	h := newHarness(t)
	name := strings.Repeat("🐳", 100) // 400 bytes, 100 characters
	v := h.create(oceantest.TokenBob, map[string]any{"name": name, "url": "u", "on": []string{}})
	assert.Equal(t, name, v.Name)
	res := h.call("create", oceantest.TokenBob, map[string]any{"name": name + "a", "url": "u", "on": []string{}})
	assert.JSONEq(t, invalidParamBody("#/properties/name/maxLength", "must NOT have more than 100 characters"), res.body)
}

func TestUnknownPropertiesAreIgnored(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "n", "url": "u", "on": []string{}, "active": false, "userId": oceantest.AliceID, "id": "x"})
	assert.True(t, v.Active)
	assert.Equal(t, oceantest.BobID, v.UserID)
}

func TestRouting(t *testing.T) {
	h := newHarness(t)
	send := func(method, path, contentType, body string, header http.Header) response {
		req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
		require.NoError(t, err)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		return h.do(req)
	}
	bearer := http.Header{"Authorization": {"Bearer " + oceantest.TokenBob}}
	unknownEndpoint := `{"error":{"message":"Unknown API endpoint.","code":"UNKNOWN_API_ENDPOINT","id":"2ca3b769-540a-4f08-9dd5-b5a825b6d0f1","kind":"client"}}`

	t.Run("GET on an endpoint: a bare 405", func(t *testing.T) {
		for _, ep := range []string{"create", "list", "show", "update", "delete", "test", "deliveries", "redeliver"} {
			res := send(http.MethodGet, "/api/i/webhooks/"+ep, "", "", bearer)
			assert.Equal(t, http.StatusMethodNotAllowed, res.status, ep)
			assert.Empty(t, res.body, ep)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		res := send(http.MethodHead, "/api/i/webhooks/list", "", "", bearer)
		assert.Equal(t, http.StatusMethodNotAllowed, res.status)
	})
	t.Run("GET on an unknown endpoint", func(t *testing.T) {
		for _, p := range []string{"/api/i/webhooks/nope", "/api/i/webhooks", "/api/i/webhooks/", "/api/i/webhooks/list/x"} {
			res := send(http.MethodGet, p, "", "", nil)
			assert.Equal(t, http.StatusNotFound, res.status, p)
			assert.JSONEq(t, unknownEndpoint, res.body, p)
		}
	})
	t.Run("POST on an unknown endpoint: Fastify's 404", func(t *testing.T) {
		res := send(http.MethodPost, "/api/i/webhooks/nope?x=1", "application/json", `{}`, bearer)
		assert.Equal(t, http.StatusNotFound, res.status)
		assert.JSONEq(t, `{"message":"Route POST:/api/i/webhooks/nope?x=1 not found","error":"Not Found","statusCode":404}`, res.body)
	})
	t.Run("other methods are treated like POST", func(t *testing.T) {
		for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			res := send(m, "/api/i/webhooks/list", "application/json", `{}`, bearer)
			assert.Equal(t, http.StatusOK, res.status, m)
			assert.Equal(t, "[]", res.body, m)
		}
	})
	t.Run("POST without a body", func(t *testing.T) {
		res := send(http.MethodPost, "/api/i/webhooks/list", "", "", bearer)
		assert.Equal(t, http.StatusBadRequest, res.status, "params are undefined, not an object")
		assert.JSONEq(t, invalidParamBody("#/type", "must be object"), res.body)
		res = send(http.MethodPost, "/api/i/webhooks/list", "", "", nil)
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.Contains(t, res.body, "CREDENTIAL_REQUIRED")
	})
	t.Run("a body without a content type", func(t *testing.T) {
		res := send(http.MethodPost, "/api/i/webhooks/list", "", `{}`, bearer)
		assert.Equal(t, http.StatusUnsupportedMediaType, res.status)
		assert.JSONEq(t, `{"statusCode":415,"code":"FST_ERR_CTP_INVALID_MEDIA_TYPE","error":"Unsupported Media Type","message":"Unsupported Media Type: undefined"}`, res.body)
	})
	t.Run("JSON with a charset", func(t *testing.T) {
		res := send(http.MethodPost, "/api/i/webhooks/list", "Application/JSON; charset=utf-8", `{}`, bearer)
		assert.Equal(t, http.StatusOK, res.status)
	})
	t.Run("multipart carries no params", func(t *testing.T) {
		res := send(http.MethodPost, "/api/i/webhooks/list", "multipart/form-data; boundary=x", "--x--", bearer)
		assert.Equal(t, http.StatusBadRequest, res.status)
		assert.JSONEq(t, invalidParamBody("#/type", "must be object"), res.body)
	})
	t.Run("CORS preflight", func(t *testing.T) {
		res := send(http.MethodOptions, "/api/i/webhooks/create", "", "", http.Header{
			"Origin": {"https://client.example"}, "Access-Control-Request-Method": {"POST"},
			"Access-Control-Request-Headers": {"content-type,authorization"}})
		assert.Equal(t, http.StatusNoContent, res.status)
		assert.Equal(t, "*", res.header.Get("Access-Control-Allow-Origin"))
		assert.Equal(t, "GET,HEAD,POST", res.header.Get("Access-Control-Allow-Methods"))
		assert.Equal(t, "content-type,authorization", res.header.Get("Access-Control-Allow-Headers"))
	})
	t.Run("answers allow any origin", func(t *testing.T) {
		res := send(http.MethodPost, "/api/i/webhooks/list", "application/json", `{}`, bearer)
		assert.Equal(t, "*", res.header.Get("Access-Control-Allow-Origin"))
	})
	assert.Empty(t, h.all())
}

func TestPanicFreeOnEveryEndpointWithJunk(t *testing.T) {
	h := newHarness(t)
	h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
	before := h.all()
	junk := []string{`{}`, `[]`, `null`, `true`, `1`, `"s"`, `{"webhookId":null}`, `{"webhookId":[]}`, `{"webhookId":{}}`,
		`{"name":[],"url":{},"secret":[],"on":[[]],"active":null,"type":[],"override":[],"limit":{},"untilId":1,"deliveryId":false}`}
	for ep := range h.api.endpoints {
		for _, body := range junk {
			res := h.call(ep, oceantest.TokenBob, body)
			assert.Contains(t, []int{http.StatusBadRequest, http.StatusOK}, res.status, "%s %s: %s", ep, body, res.body)
		}
	}
	// None of the junk could have changed the hook: every call that names
	// it has a parameter of the wrong type.
	assert.Equal(t, before, h.all())
	assert.Empty(t, h.deliveries.sent())
}

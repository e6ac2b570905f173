package ocean

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// credentialCase is one call and what Ocean makes of its credential: the
// token it authenticates (present) or none, a bare 400 (errNotString), or a
// reading we cannot be sure of (errAmbiguous).
type credentialCase struct {
	name        string
	method      string   // default POST
	target      string   // default /api/following/create
	auth        []string // Authorization header values, in order
	contentType string   // default application/json; "-" for none
	body        string
	want        Credential
	err         error
}

var (
	anonymous = Credential{}
	asX       = Credential{Token: "tokenX", Present: true}
	asY       = Credential{Token: "tokenY", Present: true}
)

func TestReadCredential(t *testing.T) {
	cases := []credentialCase{
		// Authorization
		{name: "bearer header", auth: []string{"Bearer tokenX"}, body: `{}`, want: asX},
		{name: "body i", body: `{"i":"tokenY"}`, want: asY},
		{name: "bearer wins over i", auth: []string{"Bearer tokenX"}, body: `{"i":"tokenY"}`, want: asX},
		{name: "lower-case bearer is not Ocean's: i wins", auth: []string{"bearer tokenX"}, body: `{"i":"tokenY"}`, want: asY},
		{name: "upper-case BEARER is not Ocean's: i wins", auth: []string{"BEARER tokenX"}, body: `{"i":"tokenY"}`, want: asY},
		{name: "lower-case bearer alone is anonymous", auth: []string{"bearer tokenX"}, body: `{}`, want: anonymous},
		{name: "a tab after Bearer is not Ocean's separator", auth: []string{"Bearer\ttokenX"}, body: `{"i":"tokenY"}`, want: asY},
		{name: "Bearer and nothing, trimmed to Bearer: i wins", auth: []string{"Bearer "}, body: `{"i":"tokenY"}`, want: asY},
		{name: "blanks around the value are trimmed", auth: []string{" \tBearer tokenX \t"}, body: `{}`, want: asX},
		{name: "two spaces: Ocean's token starts with a space", auth: []string{"Bearer  tokenX"}, body: `{"i":"tokenY"}`, err: ErrCredentialAmbiguous},
		{name: "a token with a space inside", auth: []string{"Bearer tokenX tokenY"}, body: `{}`, err: ErrCredentialAmbiguous},
		{name: "a token with a non-ASCII byte", auth: []string{"Bearer tökenX"}, body: `{}`, err: ErrCredentialAmbiguous},
		{name: "another scheme: i wins", auth: []string{"Basic dXNlcjpwYXNz"}, body: `{"i":"tokenY"}`, want: asY},
		{name: "two Authorization headers", auth: []string{"Bearer tokenX", "Bearer tokenY"}, body: `{}`, err: ErrCredentialAmbiguous},
		{name: "two Authorization headers, one not bearer", auth: []string{"bearer tokenX", "Bearer tokenY"}, body: `{"i":"tokenY"}`, err: ErrCredentialAmbiguous},
		// the body's i
		{name: "null i is anonymous", body: `{"i":null}`, want: anonymous},
		{name: "empty i is a credential Ocean refuses", body: `{"i":""}`, want: Credential{Present: true}},
		{name: "numeric i", body: `{"i":42}`, err: ErrCredentialNotString},
		{name: "object i", body: `{"i":{"a":"tokenY"}}`, err: ErrCredentialNotString},
		{name: "array i", body: `{"i":["tokenY"]}`, err: ErrCredentialNotString},
		{name: "boolean i", body: `{"i":true}`, err: ErrCredentialNotString},
		{name: "non-string i under a bearer header is not read", auth: []string{"Bearer tokenX"}, body: `{"i":42}`, want: asX},
		{name: "i twice: JSON.parse keeps the last", body: `{"i":"tokenX","text":"a","i":"tokenY"}`, err: ErrCredentialAmbiguous},
		{name: "i twice, once escaped", body: `{"i":"tokenX","\u0069":"tokenY"}`, err: ErrCredentialAmbiguous},
		{name: "i twice, the same token", body: `{"i":"tokenY","i":"tokenY"}`, err: ErrCredentialAmbiguous},
		{name: "escaped key is i", body: `{"\u0069":"tokenY"}`, want: asY},
		{name: "escapes in the token", body: `{"i":"token\u0059"}`, want: asY},
		{name: "lone surrogate in the token", body: `{"i":"token\ud800"}`, err: ErrCredentialAmbiguous},
		{name: "control character in the token", body: `{"i":"tokenY\u0000"}`, err: ErrCredentialAmbiguous},
		{name: "trailing blank in the token", body: `{"i":"tokenY "}`, err: ErrCredentialAmbiguous},
		{name: "nested i is not the credential", body: `{"x":{"i":"tokenY"}}`, want: anonymous},
		{name: "i of an array body is undefined", body: `[{"i":"tokenY"}]`, want: anonymous},
		{name: "null body", body: `null`, want: anonymous},
		{name: "string body", body: `"tokenY"`, want: anonymous},
		{name: "invalid JSON", body: `{"i":"tokenY"`, err: ErrCredentialAmbiguous},
		{name: "trailing data", body: `{"i":"tokenY"} {"i":"tokenX"}`, err: ErrCredentialAmbiguous},
		{name: "empty JSON body is refused", body: ``, err: ErrCredentialAmbiguous},
		{name: "empty JSON body under a bearer header", auth: []string{"Bearer tokenX"}, body: ``, want: asX},
		// content types
		{name: "JSON type in another case, with a charset", contentType: "Application/JSON; charset=utf-8", body: `{"i":"tokenY"}`, want: asY},
		{name: "text/plain body is one string: no i", contentType: "text/plain;charset=UTF-8", body: `{"i":"tokenY"}`, want: anonymous},
		{name: "text/plain under a bearer header", contentType: "text/plain", auth: []string{"Bearer tokenX"}, body: `{"i":"tokenY"}`, want: asX},
		{name: "no body, no type", contentType: "-", want: anonymous},
		{name: "no body, no type, bearer", contentType: "-", auth: []string{"Bearer tokenX"}, want: asX},
		{name: "a body of no type is refused", contentType: "-", body: `{"i":"tokenY"}`, err: ErrCredentialAmbiguous},
		{name: "a +json type is refused", contentType: "application/activity+json", body: `{"i":"tokenY"}`, err: ErrCredentialAmbiguous},
		{name: "form body is refused", contentType: "application/x-www-form-urlencoded", body: `i=tokenY`, err: ErrCredentialAmbiguous},
		{name: "multipart: the form's i depends on the endpoint", contentType: "multipart/form-data; boundary=b",
			body: "--b\r\nContent-Disposition: form-data; name=\"i\"\r\n\r\ntokenY\r\n--b--\r\n", err: ErrCredentialAmbiguous},
		{name: "multipart under a bearer header", contentType: "multipart/form-data; boundary=b", auth: []string{"Bearer tokenX"},
			body: "--b\r\nContent-Disposition: form-data; name=\"i\"\r\n\r\ntokenY\r\n--b--\r\n", want: asX},
		// GET reads the query, HEAD nothing
		{name: "GET query i", method: http.MethodGet, target: "/api/meta?i=tokenY", contentType: "-", want: asY},
		{name: "GET query i escaped", method: http.MethodGet, target: "/api/meta?%69=token%59", contentType: "-", want: asY},
		{name: "GET query i twice is an array", method: http.MethodGet, target: "/api/meta?i=tokenX&i=tokenY", contentType: "-", err: ErrCredentialNotString},
		{name: "GET body is not read", method: http.MethodGet, target: "/api/meta", body: `{"i":"tokenY"}`, want: anonymous},
		{name: "GET bearer wins over the query", method: http.MethodGet, target: "/api/meta?i=tokenY", contentType: "-", auth: []string{"Bearer tokenX"}, want: asX},
		{name: "GET malformed query", method: http.MethodGet, target: "/api/meta?i=tokenY;x=1", contentType: "-", err: ErrCredentialAmbiguous},
		{name: "HEAD reads no query", method: http.MethodHead, target: "/api/meta?i=tokenY", contentType: "-", want: anonymous},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			target := tc.target
			if target == "" {
				target = "/api/following/create"
			}
			r := httptest.NewRequest(method, target, nil)
			switch tc.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tc.contentType)
			}
			for _, v := range tc.auth {
				r.Header.Add("Authorization", v)
			}
			got, err := ReadCredential(r, []byte(tc.body))
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				assert.Equal(t, anonymous, got, "no token comes with an error")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestReadCredentialFromTheWire sends raw requests to a Go server: header
// names in any case, blanks around values and repeated headers reach
// ReadCredential the way Node hands them to Ocean (name case folded, value
// trimmed, the first of several kept, which we refuse to guess at).
func TestReadCredentialFromTheWire(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c, err := ReadCredential(r, body)
		fmt.Fprintf(w, "%q %v %v", c.Token, c.Present, err)
	}))
	t.Cleanup(srv.Close)
	cases := []struct {
		name    string
		headers string
		body    string
		want    string
	}{
		{"lower-case header name", "authorization: Bearer tokenX\r\n", `{}`, `"tokenX" true <nil>`},
		{"upper-case header name, blanks around", "AUTHORIZATION: \t Bearer tokenX \t \r\n", `{}`, `"tokenX" true <nil>`},
		{"Bearer and a blank only", "Authorization: Bearer \r\n", `{"i":"tokenY"}`, `"tokenY" true <nil>`},
		{"lower-case scheme", "Authorization: bearer tokenX\r\n", `{"i":"tokenY"}`, `"tokenY" true <nil>`},
		{"two headers in two cases", "Authorization: Bearer tokenX\r\nauthorization: Bearer tokenY\r\n", `{}`,
			`"" false ` + ErrCredentialAmbiguous.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			_, err = io.WriteString(conn, "POST /api/following/create HTTP/1.1\r\nHost: ocean\r\nConnection: close\r\n"+
				"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(tc.body))+"\r\n"+tc.headers+"\r\n"+tc.body)
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.want, strings.TrimSpace(string(got)))
		})
	}
}

func TestHasDuplicateKeys(t *testing.T) {
	many := func(last string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range 40 {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		b.WriteString(`"` + last + `":0}`)
		return b.String()
	}
	cases := []struct {
		name string
		body string
		want bool
	}{
		{"empty object", `{}`, false},
		{"distinct keys", `{"a":1,"b":{"c":[1,{"d":2}]}}`, false},
		{"top-level duplicate", `{"userId":"V","text":"x","userId":"W"}`, true},
		{"nested duplicate", `{"x":{"a":1,"a":2}}`, true},
		{"duplicate inside an array element", `[{"a":1},{"a":1,"b":2,"a":3}]`, true},
		{"same key in sibling objects", `{"x":{"a":1},"y":{"a":1}}`, false},
		{"same key at two depths", `{"a":{"a":{"a":1}}}`, false},
		{"array elements alike", `[{"a":1},{"a":1}]`, false},
		{"values alike", `{"a":"a","b":"a"}`, false},
		{"escaped duplicate", `{"a":1,"\u0061":2}`, true},
		{"escaped non-ASCII duplicate", `{"é":1,"\u00e9":2}`, true},
		{"escaped quote in a key", `{"a\"":1,"a":2}`, false},
		{"escaped quote twice", `{"a\"":1,"a\"":2}`, true},
		{"string holding braces and commas", `{"a":"},{\"a\":1","b":1}`, false},
		{"many keys", many("last"), false},
		{"many keys, duplicate at the end", many("k3"), true},
		{"not an object", `"a"`, false},
		{"unterminated object", `{"a":1`, true},
		{"unterminated string", `{"a`, true},
		{"stray close", `{}}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, HasDuplicateKeys([]byte(tc.body)))
		})
	}
}

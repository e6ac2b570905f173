package ocean

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// How Ocean reads the credential of an API call (its ApiCallService): the
// Authorization header when it starts with "Bearer " (that case, one space;
// the rest is the token, verbatim), else the field `i` of the call's
// parameters: the JSON body, the query string of a GET. An `i` that is
// neither a string nor null is a 400. The header value reaches Ocean with
// its leading and trailing blanks trimmed, and of several Authorization
// headers Ocean keeps the first.

// Credential is the credential of one API call as Ocean reads it.
type Credential struct {
	// Token is the string Ocean authenticates the call with. It is empty
	// when Present is false, and may be empty when Present is true (`"i":
	// ""`, which Ocean refuses as AUTHENTICATION_FAILED).
	Token string
	// Present is false for an anonymous call: no "Bearer " header, and no
	// `i` or `"i": null`.
	Present bool
}

var (
	// ErrCredentialNotString: the call's `i` is neither a string nor null;
	// Ocean answers a bare 400 without running the endpoint.
	ErrCredentialNotString = errors.New("ocean: credential `i` is neither a string nor null")
	// ErrCredentialAmbiguous: Ocean could read the call's credential
	// differently from this reading (several Authorization headers, `i`
	// twice, a token that would not reach Ocean unchanged in a header, a
	// body whose parameters depend on the endpoint or that Ocean refuses).
	// Such a call must not be acted on as any account.
	ErrCredentialAmbiguous = errors.New("ocean: the call's credential could be read differently by Ocean")
)

const bearerPrefix = "Bearer " // case-sensitive, as Ocean compares it

// ReadCredential reads the credential of an API call exactly as Ocean does.
// body is the request body the caller already read (r.Body is not touched).
// The error is ErrCredentialNotString or ErrCredentialAmbiguous; with either
// the call must not be attributed to anyone.
func ReadCredential(r *http.Request, body []byte) (Credential, error) {
	switch auth := r.Header["Authorization"]; {
	case len(auth) > 1:
		return Credential{}, ErrCredentialAmbiguous
	case len(auth) == 1:
		// The HTTP parser trims the value before Ocean sees it; a value
		// given here untrimmed is read the same way.
		if tok, ok := strings.CutPrefix(strings.Trim(auth[0], " \t"), bearerPrefix); ok {
			return checked(tok)
		}
	}
	if r.Method == http.MethodGet {
		return queryCredential(r.URL.RawQuery)
	}
	if r.Method == http.MethodHead {
		return Credential{}, nil // Ocean's body of a HEAD is undefined
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if len(body) == 0 {
			return Credential{}, nil
		}
		return Credential{}, ErrCredentialAmbiguous // refused: a body of no type
	}
	mt, _, _ := strings.Cut(ct, ";")
	switch mt = strings.ToLower(strings.TrimSpace(mt)); mt {
	case "application/json":
		return jsonCredential(body)
	case "text/plain":
		return Credential{}, nil // the body is one string: it has no `i`
	default:
		// multipart/form-data: the form's `i` counts on upload endpoints
		// only; anything else Ocean refuses.
		return Credential{}, ErrCredentialAmbiguous
	}
}

// checked passes a token on when it can be handed to Ocean again unchanged
// (in an Authorization header, to ask who it is): visible ASCII only. Every
// token Ocean issues is of that kind.
func checked(tok string) (Credential, error) {
	for i := range len(tok) {
		if c := tok[i]; c <= ' ' || c > '~' {
			return Credential{}, ErrCredentialAmbiguous
		}
	}
	return Credential{Token: tok, Present: true}, nil
}

func queryCredential(raw string) (Credential, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return Credential{}, ErrCredentialAmbiguous
	}
	switch v := q["i"]; len(v) {
	case 0:
		return Credential{}, nil
	case 1:
		return checked(v[0])
	default:
		return Credential{}, ErrCredentialNotString // Ocean gets an array
	}
}

// jsonCredential reads the top-level `i` of a JSON body. Keys are compared
// unescaped, as JSON.parse does; a second `i` is ambiguous (JSON.parse keeps
// the last, other readers the first).
func jsonCredential(body []byte) (Credential, error) {
	if !json.Valid(body) {
		return Credential{}, ErrCredentialAmbiguous // Ocean refuses it
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return Credential{}, nil // not an object: its `i` is undefined
	}
	var raw json.RawMessage
	n := 0
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return Credential{}, ErrCredentialAmbiguous
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return Credential{}, ErrCredentialAmbiguous
		}
		if k == "i" {
			raw, n = v, n+1
		}
	}
	switch {
	case n == 0:
		return Credential{}, nil
	case n > 1:
		return Credential{}, ErrCredentialAmbiguous
	}
	switch raw[0] {
	case 'n':
		return Credential{}, nil
	case '"':
		var tok string
		if json.Unmarshal(raw, &tok) != nil {
			return Credential{}, ErrCredentialAmbiguous
		}
		if tok == "" {
			return Credential{Present: true}, nil
		}
		return checked(tok)
	default:
		return Credential{}, ErrCredentialNotString
	}
}

// smallKeys is how many keys an object's duplicate check compares one by
// one before it switches to a map.
const smallKeys = 16

// HasDuplicateKeys reports whether some object of a JSON text names a key
// twice, keys compared unescaped. Ocean parses bodies with JSON.parse, which
// keeps the last of such members; gjson and most Go readers keep the first,
// so a body for which this is true cannot be read as Ocean reads it. No
// client of Ocean sends one. Malformed JSON reports true.
func HasDuplicateKeys(data []byte) bool {
	type object struct {
		isObject bool
		keys     []string
		set      map[string]struct{}
	}
	var stack []object
	expectKey := false
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case '{', '[':
			stack = append(stack, object{isObject: c == '{'})
			expectKey = c == '{'
			i++
		case '}', ']':
			if len(stack) == 0 {
				return true
			}
			stack = stack[:len(stack)-1]
			expectKey = false
			i++
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].isObject
			i++
		case '"':
			end, plain := stringEnd(data, i)
			if end < 0 {
				return true
			}
			if expectKey && len(stack) > 0 {
				key := string(data[i+1 : end-1])
				if !plain {
					if json.Unmarshal(data[i:end], &key) != nil {
						return true
					}
				}
				o := &stack[len(stack)-1]
				if o.set != nil {
					if _, dup := o.set[key]; dup {
						return true
					}
					o.set[key] = struct{}{}
				} else {
					for _, k := range o.keys {
						if k == key {
							return true
						}
					}
					o.keys = append(o.keys, key)
					if len(o.keys) > smallKeys {
						o.set = make(map[string]struct{}, 2*len(o.keys))
						for _, k := range o.keys {
							o.set[k] = struct{}{}
						}
						o.keys = nil
					}
				}
				expectKey = false
			}
			i = end
		default:
			i++
		}
	}
	return len(stack) != 0
}

// stringEnd finds the end (one past the closing quote) of the JSON string
// starting at data[start]; plain is false when it holds an escape or a
// non-ASCII byte. end is -1 when the string does not end.
func stringEnd(data []byte, start int) (end int, plain bool) {
	plain = true
	for j := start + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '\\':
			plain = false
			j++
		case c == '"':
			return j + 1, plain
		case c >= 0x80:
			plain = false
		}
	}
	return -1, false
}

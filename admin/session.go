package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A browser cannot send the admin token as a bearer, so the dashboard's
// login form takes it once and answers with a session cookie. The cookie
// holds no token: it is "<expiry>.<nonce>.<mac>", the MAC an HMAC-SHA256 of
// the expiry and nonce under a key derived from the token. Any process that
// holds the same token accepts it until it expires, so a restart keeps
// operators logged in, and a new token (rotated as the README says) ends
// every session. The CSRF token of a session's forms is an HMAC of the
// cookie under the same key: only a page that received it from this
// listener can put it in a form.

// Names of the session cookie and the forms' CSRF field.
const (
	sessionCookie = "oceanhooks_admin"
	csrfField     = "csrf"
)

// SessionLifetime is how long a dashboard login lasts.
const SessionLifetime = 12 * time.Hour

// sessions issues and checks dashboard session cookies.
type sessions struct {
	key []byte
	now func() time.Time
}

func newSessions(token string, now func() time.Time) *sessions {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("oceanhooks admin dashboard session v1"))
	return &sessions{key: mac.Sum(nil), now: now}
}

func (s *sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns a new session's cookie value.
func (s *sessions) issue() string {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	exp := s.now().Add(SessionLifetime).Truncate(time.Second)
	e, n := strconv.FormatInt(exp.Unix(), 10), base64.RawURLEncoding.EncodeToString(nonce)
	return e + "." + n + "." + s.mac("session", e, n)
}

// valid reports whether value is a session this token issued that has not
// expired.
func (s *sessions) valid(value string) bool {
	e, rest, ok := strings.Cut(value, ".")
	if !ok {
		return false
	}
	n, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(s.mac("session", e, n)))
}

// csrf is the CSRF token of session's forms.
func (s *sessions) csrf(session string) string {
	if session == "" {
		return ""
	}
	return s.mac("csrf", session)
}

// checkCSRF reports whether token is session's CSRF token.
func (s *sessions) checkCSRF(session, token string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(s.csrf(session)))
}

// setSession sets the session cookie on w: HttpOnly (no script reads it),
// SameSite=Strict (no other site's request carries it), Secure when the
// request came over TLS, and scoped to the dashboard's pages, so that other
// services on the same host name (cookies ignore ports) are not sent it
// with ordinary requests.
func setSession(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: dashPrefix, MaxAge: int(SessionLifetime.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// clearSession removes the session cookie.
func clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: dashPrefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Route classes: what the guard asks of a request, by its path.
type routeClass int

const (
	classAPI       routeClass = iota // the token as a bearer; JSON bodies
	classPublic                      // GET /healthz, /readyz (and /metrics with metricsPublic)
	classDashboard                   // the token or a dashboard session; form bodies with a CSRF token
	classLogin                       // the dashboard's login form: no credential yet; form bodies
)

// dashPrefix holds every dashboard page but "/", which sends to it. The
// session cookie is scoped to it (see sessionCookie).
const dashPrefix = "/dash/"

// loginPath is the dashboard's login page.
const loginPath = dashPrefix + "login"

// guard is what the admin listener checks before any route:
//
//  1. the Host header names this listener (DNS rebinding): else 421;
//  2. an Origin header, if any, is this listener's own origin: else 403;
//  3. a credential: the token as a bearer for every route but GET /healthz,
//     /readyz and, with admin.metricsPublic, /metrics (else 401 with
//     WWW-Authenticate); on the dashboard's pages the bearer or the
//     dashboard's session cookie (else a redirect to its login page);
//  4. a method other than GET and HEAD sends, on the operator API,
//     Content-Type application/json, which a web page cannot send
//     cross-origin without a preflight (else 415); on the dashboard, a form
//     (application/x-www-form-urlencoded) that proves it came from the
//     dashboard's own pages: an Origin header naming the listener (or
//     Sec-Fetch-Site: same-origin) and, with a session cookie, the CSRF
//     token bound to that session (else 403).
//
// Why forms are safe on the dashboard only: a page on another site can make
// a browser send a form POST without a preflight, which is why the JSON API
// refuses forms. A dashboard form POST must instead (a) carry the session
// cookie, which is SameSite=Strict, so a browser never attaches it to a
// request another site started; (b) carry an Origin naming this listener,
// which every current browser sends with a POST and a foreign page cannot
// forge; and (c) carry a CSRF token derived from the session, which only a
// page served by this listener holds (the same-origin policy keeps other
// pages from reading it, and step 1 keeps a page whose name was rebound to
// this address from being this listener's origin).
type guard struct {
	tokenSum      [sha256.Size]byte // the token is compared by its digest, in constant time
	metricsPublic bool
	hosts         hostPolicy
	sessions      *sessions
}

// classify returns what r's path asks of it.
func (g *guard) classify(r *http.Request) routeClass {
	p := r.URL.Path
	switch {
	case p == loginPath:
		return classLogin
	case strings.HasPrefix(p, dashPrefix):
		return classDashboard
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		return classAPI
	case p == "/" || p == "/healthz" || p == "/readyz" || (p == "/metrics" && g.metricsPublic):
		// GET / only sends the browser to the dashboard (dashPrefix).
		return classPublic
	}
	return classAPI
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hosts.accepts(r.Host) {
			writeJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "Host " + strconv.Quote(r.Host) +
				" is not this admin listener's address; add it to admin.allowedHosts to reach the listener by that name"})
			return
		}
		if origin, ok := r.Header["Origin"]; ok && !sameOrigin(origin, r.Host) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin requests are refused"})
			return
		}
		safe := r.Method == http.MethodGet || r.Method == http.MethodHead
		switch g.classify(r) {
		case classPublic:
		case classAPI:
			if !g.bearer(r) {
				unauthorized(w)
				return
			}
			if !safe && !hasType(r, "application/json") {
				writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "Content-Type must be application/json"})
				return
			}
		case classLogin:
			if !safe && !g.formFromDashboard(w, r) {
				return
			}
		case classDashboard:
			a, ok := g.authenticate(r)
			if !ok {
				http.Redirect(w, r, loginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			if !safe {
				if !g.formFromDashboard(w, r) {
					return
				}
				if a.session != "" && !g.sessions.checkCSRF(a.session, r.PostFormValue(csrfField)) {
					writeJSON(w, http.StatusForbidden, map[string]string{"error": "the form's CSRF token is missing or stale: reload the page and try again"})
					return
				}
			}
			r = r.WithContext(context.WithValue(r.Context(), authKey{}, a))
		}
		next.ServeHTTP(w, r)
	})
}

// maxFormBytes bounds a dashboard form.
const maxFormBytes = 16 << 10

// formFromDashboard checks that a dashboard POST is a form sent by one of the
// listener's own pages, and parses it; else it answers and returns false.
func (g *guard) formFromDashboard(w http.ResponseWriter, r *http.Request) bool {
	if !hasType(r, "application/x-www-form-urlencoded") {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "Content-Type must be application/x-www-form-urlencoded"})
		return false
	}
	// The Origin, when present, was checked to be this listener's own.
	if _, ok := r.Header["Origin"]; !ok && r.Header.Get("Sec-Fetch-Site") != "same-origin" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "a dashboard form must come from the dashboard's own pages (Origin header)"})
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read form: " + err.Error()})
		return false
	}
	return true
}

// auth is how a dashboard request proved itself.
type auth struct {
	session string // the session cookie's value; "" for a bearer
}

type authKey struct{}

// authOf returns the credential the guard accepted for r's dashboard page.
func authOf(r *http.Request) auth {
	a, _ := r.Context().Value(authKey{}).(auth)
	return a
}

// authenticate accepts the token as a bearer or a valid session cookie.
func (g *guard) authenticate(r *http.Request) (auth, bool) {
	if g.bearer(r) {
		return auth{}, true
	}
	if c, err := r.Cookie(sessionCookie); err == nil && g.sessions.valid(c.Value) {
		return auth{session: c.Value}, true
	}
	return auth{}, false
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="oceanhooks admin"`)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token: send Authorization: Bearer <token> (see admin.tokenFile)"})
}

// bearer reports whether r carries the token as a bearer.
func (g *guard) bearer(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return g.isToken(strings.TrimSpace(token))
}

func sha256Sum(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

// isToken compares token with the admin token in constant time.
func (g *guard) isToken(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) == 1
}

// sameOrigin reports whether the Origin header values name the admin
// listener itself, reached as host (the accepted Host header).
func sameOrigin(origin []string, host string) bool {
	if len(origin) != 1 {
		return false
	}
	u, err := url.Parse(origin[0])
	return err == nil && u.Scheme == "http" && u.Path == "" && strings.EqualFold(u.Host, host)
}

// hasType reports whether r's Content-Type is the media type want.
func hasType(r *http.Request, want string) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == want
}

// hostPolicy decides which Host header values reach the admin listener: its
// own address, so that a web page whose DNS name was rebound to it cannot.
type hostPolicy struct {
	port    string          // the bound port
	names   map[string]bool // accepted with port: the configured host, the bound IP, localhost on loopback or any address
	anyIP   bool            // bound to every address: any IP literal, with port
	allowed map[string]bool // admin.allowedHosts: "name" (any port) and "name:port"
}

func newHostPolicy(listen string, bound net.Addr, allowedHosts []string) (hostPolicy, error) {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return hostPolicy{}, fmt.Errorf("admin listener: unexpected address %v", bound)
	}
	p := hostPolicy{port: strconv.Itoa(tcp.Port), names: map[string]bool{}, allowed: map[string]bool{}}
	ip, _ := netip.AddrFromSlice(tcp.IP)
	ip = ip.Unmap()
	p.names[ip.String()] = true
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		p.names[normalHost(host)] = true
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		p.names["localhost"] = true
	}
	p.anyIP = ip.IsUnspecified()
	for _, h := range allowedHosts {
		if host, port, err := net.SplitHostPort(h); err == nil {
			p.allowed[net.JoinHostPort(normalHost(host), port)] = true
			continue
		}
		p.allowed[normalHost(h)] = true
	}
	return p, nil
}

// accepts reports whether hostHeader (host or host:port) names the listener.
func (p hostPolicy) accepts(hostHeader string) bool {
	host, port, err := net.SplitHostPort(hostHeader)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostHeader, "["), "]"), "80"
	}
	host = normalHost(host)
	if host == "" {
		return false
	}
	if p.allowed[host] || p.allowed[net.JoinHostPort(host, port)] {
		return true
	}
	if port != p.port {
		return false
	}
	if p.names[host] {
		return true
	}
	_, err = netip.ParseAddr(host)
	return p.anyIP && err == nil
}

// normalHost lower-cases a host name, drops a trailing dot and writes an IP
// address in its canonical form.
func normalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}

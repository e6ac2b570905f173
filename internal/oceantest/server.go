package oceantest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// User ids of the capture.
const (
	AdminID = "au1lb50u9jzs0003"
	AliceID = "au1lb55h9jzs0004"
	BobID   = "au1lb5al9jzs0005"
	CarolID = "au1lcbjm9jzs000z"
)

// Fixed test tokens, 16 characters like Ocean's native tokens: every
// permission, `secure` endpoints included.
const (
	TokenAdmin = "token-admin-0001"
	TokenAlice = "token-alice-0001"
	TokenBob   = "token-bob-000001"
	TokenCarol = "token-carol-0001"
)

// App tokens: access tokens alice gave an app, 32 characters like Ocean's
// MiAuth tokens. Ocean lets them call an endpoint only when their permission
// list holds the endpoint's kind.
const (
	// TokenAliceAppRead holds ["read:account"].
	TokenAliceAppRead = "app-token-alice-read-00000000001"
	// TokenAliceAppWrite holds ["read:account","write:account"].
	TokenAliceAppWrite = "app-token-alice-write-0000000001"
)

// Server is a running fake Ocean. Its API is POST /api/<endpoint> with a JSON
// body, authenticated like Ocean: `Authorization: Bearer <token>` (case
// sensitive) first, else the body field `i` (the last one when repeated; one
// that is neither a string nor null is a bare 400). No token where one is
// needed is 401 CREDENTIAL_REQUIRED, an unknown or empty token is 401
// AUTHENTICATION_FAILED (headers and bodies from
// ocean.Write). Every answer has Ocean's Content-Type and Cache-Control; a
// 204 has no body.
//
// An app token (TokenAliceAppRead, TokenAliceAppWrite) is refused with 403
// PERMISSION_DENIED on an endpoint whose kind (Ocean's meta.kind, e.g.
// read:account for i, write:account for i/webhooks/update) its permission
// list lacks, after the credential check and before the endpoint runs, as
// Ocean's ApiCallService does; endpoints of no kind accept it.
//
// From its state (users, follows, follow requests, blocks, notes, reactions):
//   - i: the captured MeDetailed of the caller, counts kept current; for an
//     app token without the secrets (email, …), as Ocean packs it then.
//   - users/show {userId | userIds | username}: UserDetailedNotMe as seen by
//     the caller (relation flags; a moderator's extra keys for admin;
//     MeDetailed without secrets for oneself; no flags when anonymous);
//     unknown user: 404 NO_SUCH_USER.
//   - users/relation {userId: string | string[]}: relation object(s).
//   - following/create, following/delete, following/invalidate,
//     following/requests/accept|reject|cancel, blocking/create: the state
//     change and Ocean's answer (UserLite, 204, or the blockee's
//     UserDetailedNotMe) or its endpoint error. A locked followee gets a
//     pending request unless it follows the caller already.
//   - notes/create: a captured request made by the captured author is
//     answered with the captured createdNote byte for byte (and stored);
//     any other is created (aidx id from the clock, mentions of local
//     @users, the replied-to user and addressees, nested reply/renote).
//     As Ocean: the same parameters from the same user within 60 s are
//     answered with the earlier note, creating nothing; scheduledAt
//     answers 204 and posts nothing (Ocean's queue would, later);
//     noCreatedNote creates the note and answers 204.
//   - notes/show {noteId}: the note as the caller sees it (hidden when not
//     visible), with reactionAndUserPairCache as Ocean's notes/show has it.
//   - notes/reactions/create {noteId, reaction}: 204, counted on the note.
//   - native hooks (the hooks an Ocean without the sidecar holds; none at
//     the start, see AddWebhook): i/webhooks/create (a captured request as
//     captured, else created after Ocean's checks), i/webhooks/list and
//     i/webhooks/show of the caller's, and i/webhooks/update as this fork
//     does it (INVALID_PARAM for a missing or malformed webhookId,
//     WEBHOOK_LIMIT_EXCEEDED for a caller over policies.webhookLimit,
//     NO_SUCH_WEBHOOK for an id that is not one of the caller's native
//     hooks, so for every hook of the sidecar). The active ones fire: `note`
//     to the author on notes/create, `follow` and `followed` on a follow
//     that takes effect at once, posted in the background with Ocean's
//     headers and envelope (NativeDeliveries counts them;
//     WithoutNativeDeliveries turns this off).
//
// Any other endpoint of the capture replays the first recorded call whose
// request (minus `i`) is equal, preferring one recorded as the same user; an
// unmatched request there is a 500 naming the problem. Anything else is 404
// UNKNOWN_API_ENDPOINT. Methods other than POST are 405.
type Server struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:54321.
	URL string

	srv   *httptest.Server
	now   func() time.Time
	gzip  bool
	calls []Call // shared with every Server: read only

	mu        sync.Mutex
	counts    map[string]int
	overrides map[string]http.HandlerFunc
	st        *state

	nativeDeliveries bool           // native hooks fire (fire)
	nativeSent       int            // deliveries fired, under mu
	sending          sync.WaitGroup // deliveries in flight
}

// Option configures New.
type Option func(*config)

type config struct {
	gzip     bool
	now      func() time.Time
	locked   []string
	noNative bool
}

// WithGzip makes the server gzip every non-empty body it writes itself when
// the request's Accept-Encoding allows gzip (bodies of Handle overrides are
// left alone).
func WithGzip() Option { return func(c *config) { c.gzip = true } }

// WithNow sets the clock used for created notes' ids and createdAt.
func WithNow(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithoutNativeDeliveries keeps the native hooks from firing (for a replay
// of the capture, whose hooks point at the capture's receiver).
func WithoutNativeDeliveries() Option { return func(c *config) { c.noNative = true } }

// WithLocked starts the given users with locked accounts (see SetLocked).
func WithLocked(userIDs ...string) Option {
	return func(c *config) { c.locked = append(c.locked, userIDs...) }
}

// New starts a fake Ocean with the capture's users admin, alice, bob and carol
// (tokens TokenAdmin…TokenCarol), no follows, blocks or notes. It is closed by
// t.Cleanup. A fixture that cannot be loaded fails t.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config{now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := loadCapture()
	if err != nil {
		t.Fatalf("oceantest: %v", err)
	}
	st := newState(c.users, cfg.now)
	for _, id := range cfg.locked {
		u := st.users[id]
		if u == nil {
			t.Fatalf("oceantest: WithLocked: unknown user %q", id)
		}
		u.locked = true
	}
	s := &Server{now: cfg.now, gzip: cfg.gzip, calls: c.calls, st: st,
		counts: map[string]int{}, overrides: map[string]http.HandlerFunc{}, nativeDeliveries: !cfg.noNative}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.sending.Wait) // runs first: no delivery outlives the test
	return s
}

// Close shuts the server down; New already arranges it via t.Cleanup.
func (s *Server) Close() { s.srv.Close() }

// Calls returns how many requests reached endpoint ("notes/create") since the
// start or the last ResetCounts, overridden and failed ones included.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[endpoint]
}

// ResetCounts sets every Calls counter back to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
}

// Handle answers endpoint ("users/show") with h instead of the fake's own
// logic, to simulate errors, broken bodies or slowness; nil restores it.
func (s *Server) Handle(endpoint string, h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.overrides, endpoint)
		return
	}
	s.overrides[endpoint] = h
}

// SetLocked locks or unlocks the account of userID: following/create on a
// locked account records a pending follow request instead of a follow.
func (s *Server) SetLocked(userID string, locked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.st.users[userID]; u != nil {
		u.locked = locked
	}
}

// UserID returns the user id of a test token (native or app), "" for an
// unknown one.
func UserID(token string) string {
	for _, u := range userDefs {
		if u.token == token {
			return u.id
		}
	}
	for _, a := range appDefs {
		if a.token == token {
			return a.userID
		}
	}
	return ""
}

// request is one API call as the endpoint handlers see it.
type request struct {
	endpoint string
	params   map[string]any
	caller   *user     // nil: no credential given
	app      *appToken // nil: none, or a native token
}

// reply is what a handler answers: status and body (nil body: empty).
type reply struct {
	status int
	body   []byte
	err    *ocean.Error
}

func ok(v any) reply   { return reply{status: http.StatusOK, body: encode(v)} }
func noContent() reply { return reply{status: http.StatusNoContent} }
func fail(e *ocean.Error) reply {
	return reply{status: e.HTTPStatus(), err: e}
}

type authMode int

const (
	authOptional authMode = iota
	authRequired
)

type endpointDef struct {
	auth authMode
	fn   func(s *Server, r *request) reply
}

// endpoints are answered from the fake's state; any other endpoint that the
// capture holds is replayed.
var endpoints = map[string]endpointDef{
	"i":                         {authRequired, (*Server).apiI},
	"users/show":                {authOptional, (*Server).apiUsersShow},
	"users/relation":            {authRequired, (*Server).apiUsersRelation},
	"following/create":          {authRequired, (*Server).apiFollowingCreate},
	"following/delete":          {authRequired, (*Server).apiFollowingDelete},
	"following/invalidate":      {authRequired, (*Server).apiFollowingInvalidate},
	"following/requests/accept": {authRequired, (*Server).apiRequestsAccept},
	"following/requests/reject": {authRequired, (*Server).apiRequestsReject},
	"following/requests/cancel": {authRequired, (*Server).apiRequestsCancel},
	"blocking/create":           {authRequired, (*Server).apiBlockingCreate},
	"notes/create":              {authRequired, (*Server).apiNotesCreate},
	"notes/show":                {authOptional, (*Server).apiNotesShow},
	"notes/reactions/create":    {authRequired, (*Server).apiReactionsCreate},
	"i/webhooks/create":         {authRequired, (*Server).apiWebhooksCreate},
	"i/webhooks/list":           {authRequired, (*Server).apiWebhooksList},
	"i/webhooks/show":           {authRequired, (*Server).apiWebhooksShow},
	"i/webhooks/update":         {authRequired, (*Server).apiWebhooksUpdate},
}

// kinds are the endpoints' meta.kind in Ocean: the permission an app token
// needs to call them. Endpoints not listed (users/show, notes/show, and
// replayed ones other than the webhook endpoints) have none.
var kinds = map[string]string{
	"i":                         "read:account",
	"users/relation":            "read:account",
	"following/create":          "write:following",
	"following/delete":          "write:following",
	"following/invalidate":      "write:following",
	"following/requests/accept": "write:following",
	"following/requests/reject": "write:following",
	"following/requests/cancel": "write:following",
	"blocking/create":           "write:blocks",
	"notes/create":              "write:notes",
	"notes/reactions/create":    "write:reactions",
	"i/webhooks/create":         "write:account",
	"i/webhooks/update":         "write:account",
	"i/webhooks/delete":         "write:account",
	"i/webhooks/list":           "read:account",
	"i/webhooks/show":           "read:account",
	"i/webhooks/test":           "read:account",
}

const maxBody = 1 << 20

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint, isAPI := strings.CutPrefix(r.URL.Path, "/api/")
	s.mu.Lock()
	s.counts[endpoint]++
	h := s.overrides[endpoint]
	s.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	def, known := endpoints[endpoint]
	recorded := s.recorded(endpoint)
	if !isAPI || (!known && len(recorded) == 0) {
		s.write(w, r, fail(ocean.ErrUnknownEndpoint))
		return
	}
	if r.Method != http.MethodPost {
		s.write(w, r, fail(ocean.ErrMethodNotAllowed))
		return
	}
	params, err := readParams(r)
	if err != nil {
		s.write(w, r, fail(ocean.ErrInvalidParam.With(map[string]any{"reason": err.Error()})))
		return
	}
	if !known {
		// replay decides whether the recorded call needed a credential.
		def = endpointDef{auth: authOptional, fn: (*Server).replay}
	}
	req := &request{endpoint: endpoint, params: params}
	token, present, bad := credential(r, params)
	if bad {
		w.WriteHeader(http.StatusBadRequest) // Ocean's bare 400
		return
	}
	delete(params, "i")
	switch {
	case present:
		s.mu.Lock()
		req.caller = s.st.byToken[token]
		if req.caller == nil {
			if req.app = s.st.apps[token]; req.app != nil {
				req.caller = req.app.user
			}
		}
		s.mu.Unlock()
		if req.caller == nil {
			s.write(w, r, fail(ocean.ErrAuthenticationFailed))
			return
		}
	case def.auth == authRequired:
		s.write(w, r, fail(ocean.ErrCredentialRequired))
		return
	}
	if kind := kinds[endpoint]; req.app != nil && kind != "" && !slices.Contains(req.app.permission, kind) {
		s.write(w, r, fail(ocean.ErrPermissionDenied))
		return
	}
	s.write(w, r, def.fn(s, req))
}

// credential reads the caller's token as Ocean's ApiCallService does: the
// (first) Authorization header when it starts with "Bearer ", that case and
// one space, the rest verbatim; else the body's `i` (JSON decoding keeps the
// last of duplicate keys, as JSON.parse does). bad is an `i` that is neither
// a string nor null. Written out here, not taken from ocean.ReadCredential,
// so that the fake checks the sidecar's reading instead of sharing it.
func credential(r *http.Request, params map[string]any) (token string, present, bad bool) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return tok, true, false
	}
	switch i := params["i"].(type) {
	case nil:
		return "", false, false
	case string:
		return i, true, false
	default:
		return "", false, true
	}
}

func readParams(r *http.Request) (map[string]any, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(raw) > maxBody {
		return nil, fmt.Errorf("body larger than %d bytes", maxBody)
	}
	params := map[string]any{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return params, nil
	}
	if err := json.Unmarshal(raw, &params); err != nil {
		return nil, fmt.Errorf("body is not a JSON object: %w", err)
	}
	if params == nil {
		params = map[string]any{}
	}
	return params, nil
}

// write sends rep with Ocean's headers, gzipped when enabled and accepted.
func (s *Server) write(w http.ResponseWriter, r *http.Request, rep reply) {
	h := w.Header()
	body := rep.body
	if rep.err != nil {
		// Ocean's error headers and body exactly as the ocean package writes them.
		rec := httptest.NewRecorder()
		ocean.Write(rec, rep.err)
		for k, vs := range rec.Header() {
			if k != "Content-Length" {
				h[k] = vs
			}
		}
		rep.status, body = rec.Code, rec.Body.Bytes()
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "private, max-age=0, must-revalidate")
	if rep.status == http.StatusNoContent {
		w.WriteHeader(rep.status)
		return
	}
	if s.gzip && len(body) > 0 {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			var zb bytes.Buffer
			zw := gzip.NewWriter(&zb)
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = zb.Bytes()
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rep.status)
	_, _ = w.Write(body)
}

func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.TrimSpace(name) != "*" {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
			return false
		}
		return true
	}
	return false
}

func (s *Server) recorded(endpoint string) []Call {
	var out []Call
	for _, c := range s.calls {
		if c.Endpoint == endpoint {
			out = append(out, c)
		}
	}
	return out
}

// replay answers with the first recorded call whose request (minus `i`)
// equals this one, preferring a call the capture made as the same user. A
// credential is required when that call carried one (when none matches: when
// any call of the endpoint did). An unmatched request is a 500 that says so.
func (s *Server) replay(r *request) reply {
	c, found := s.match(r)
	needsToken := false
	if found {
		_, needsToken = c.Request["i"]
	} else {
		for _, rc := range s.recorded(r.endpoint) {
			if _, has := rc.Request["i"]; has {
				needsToken = true
			}
		}
	}
	if needsToken && r.caller == nil {
		return fail(ocean.ErrCredentialRequired)
	}
	if !found {
		return fail(ocean.ErrInternal.With(map[string]any{
			"message": "oceantest: no recorded " + r.endpoint + " call has this request"}))
	}
	return replayOf(c)
}

func replayOf(c Call) reply {
	return reply{status: c.Status, body: c.Response}
}

func (s *Server) match(r *request) (Call, bool) {
	var first *Call
	for i := range s.calls {
		c := &s.calls[i]
		if c.Endpoint != r.endpoint || !sameParams(c.Request, r.params) {
			continue
		}
		if r.caller != nil && recordedCaller(c.Label) == r.caller.id {
			return *c, true
		}
		if first == nil {
			first = c
		}
	}
	if first == nil {
		return Call{}, false
	}
	return *first, true
}

func sameParams(recorded, got map[string]any) bool {
	a := make(map[string]any, len(recorded))
	for k, v := range recorded {
		if k != "i" {
			a[k] = v
		}
	}
	return reflect.DeepEqual(a, got)
}

var labelWord = regexp.MustCompile(`[A-Za-z]+`)

// recordedCaller names the user who made a recorded call, from the capture's
// label: its first word that names a user ("A", "alice", "B", "bob", "admin").
func recordedCaller(label string) string {
	for _, w := range labelWord.FindAllString(label, -1) {
		switch w {
		case "A", "alice":
			return AliceID
		case "B", "bob":
			return BobID
		case "admin":
			return AdminID
		case "carol":
			return CarolID
		}
	}
	return ""
}

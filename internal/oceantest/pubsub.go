package oceantest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// PubSubHost is Ocean's config.host in the pub/sub capture: the channel its
// messages were published on, and the `server` of its deliveries.
const PubSubHost = "127.0.0.1:61812"

// PubSubUser is one user of the pub/sub capture.
type PubSubUser struct {
	Name  string
	ID    string
	Token string // this fake's token for the user: "tok-<name>-000000", 16 characters
	I     []byte // the user's /api/i answer, as recorded
}

// PubSubStep is one recorded API call of a scenario.
type PubSubStep struct {
	Endpoint string
	User     string // whose token the call carried
	Request  []byte // the JSON body, without the credential
	Status   int
	Response []byte // the recorded answer, compact, key order kept; nil for none
}

// PubSubDelivery is one webhook Ocean sent during a scenario.
type PubSubDelivery struct {
	User     string // the hook's owner, by name
	Type     string
	Envelope []byte // the whole body, compact, key order kept
	Body     []byte // its "body" member
}

// PubSubScenario is one line of scenarios.jsonl.
type PubSubScenario struct {
	Label      string
	Steps      []PubSubStep
	Deliveries []PubSubDelivery
	Messages   []string // the published strings, in order
}

// PubSubCapture is the whole pub/sub recording.
type PubSubCapture struct {
	Users     map[string]*PubSubUser // by name
	Scenarios []PubSubScenario
}

// LoadPubSub reads ../shared/fixtures/ocean-pubsub; a fixture that cannot be
// read fails t.
func LoadPubSub(t testing.TB) *PubSubCapture {
	t.Helper()
	dir := FixturesDir()
	if dir == "" {
		t.Fatalf("oceantest: ../shared/fixtures not found beside the module")
	}
	dir = filepath.Join(filepath.Dir(dir), "ocean-pubsub")
	c := &PubSubCapture{Users: map[string]*PubSubUser{}}
	users, err := os.ReadFile(filepath.Join(dir, "users.jsonl"))
	if err != nil {
		t.Fatalf("oceantest: %v", err)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(users), []byte("\n")) {
		name := gjson.GetBytes(line, "username").Str
		u := &PubSubUser{Name: name, ID: gjson.GetBytes(line, "i.id").Str,
			Token: fmt.Sprintf("tok-%-12s", name)[:16], I: compactRaw(t, gjson.GetBytes(line, "i").Raw)}
		u.Token = strings.ReplaceAll(u.Token, " ", "0")
		c.Users[name] = u
	}
	f, err := os.Open(filepath.Join(dir, "scenarios.jsonl"))
	if err != nil {
		t.Fatalf("oceantest: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		s := PubSubScenario{Label: gjson.GetBytes(line, "label").Str}
		for _, st := range gjson.GetBytes(line, "steps").Array() {
			req := st.Get("request")
			user := strings.TrimSuffix(strings.TrimPrefix(req.Get("i").Str, "<token:"), ">")
			var params map[string]json.RawMessage
			if err := json.Unmarshal([]byte(req.Raw), &params); err != nil {
				t.Fatalf("oceantest: %s: request: %v", s.Label, err)
			}
			delete(params, "i")
			body, _ := json.Marshal(params)
			step := PubSubStep{Endpoint: st.Get("endpoint").Str, User: user, Request: body, Status: int(st.Get("status").Int())}
			if r := st.Get("response"); r.Exists() && r.Type != gjson.Null {
				step.Response = compactRaw(t, r.Raw)
			}
			s.Steps = append(s.Steps, step)
		}
		for _, d := range gjson.GetBytes(line, "deliveries").Array() {
			s.Deliveries = append(s.Deliveries, PubSubDelivery{
				User: strings.TrimPrefix(d.Get("path").Str, "/native/"), Type: d.Get("body.type").Str,
				Envelope: compactRaw(t, d.Get("body").Raw), Body: compactRaw(t, d.Get("body.body").Raw)})
		}
		for _, m := range gjson.GetBytes(line, "messages").Array() {
			s.Messages = append(s.Messages, m.Get("raw").Str)
		}
		c.Scenarios = append(c.Scenarios, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("oceantest: %v", err)
	}
	return c
}

// Scenario returns the scenario labelled label; an unknown label fails t.
func (c *PubSubCapture) Scenario(t testing.TB, label string) PubSubScenario {
	t.Helper()
	for _, s := range c.Scenarios {
		if s.Label == label {
			return s
		}
	}
	t.Fatalf("oceantest: no pub/sub scenario %q", label)
	return PubSubScenario{}
}

// UserByID returns the user whose id is id, or nil.
func (c *PubSubCapture) UserByID(id string) *PubSubUser {
	for _, u := range c.Users {
		if u.ID == id {
			return u
		}
	}
	return nil
}

func compactRaw(t testing.TB, raw string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(raw)); err != nil {
		t.Fatalf("oceantest: compact: %v", err)
	}
	return b.Bytes()
}

// Replay is a fake Ocean that answers a pub/sub scenario's API calls as they
// were recorded, in order, /api/i for the capture's users, and
// i/webhooks/list with none (their hooks are the sidecar's). Before it
// answers a call it runs Before (Ocean publishes a call's events before it
// answers). Anything else is answered with Ocean's NO_SUCH_… style error
// (INVALID_PARAM), so that the sidecar's extra reads fail as reads do.
type Replay struct {
	URL string
	// Before runs before the answer to step n of the current scenario.
	Before func(n int)

	c   *PubSubCapture
	srv *httptest.Server

	mu    sync.Mutex
	steps []PubSubStep
	next  int
}

// NewReplay starts a Replay of c, closed by t.Cleanup.
func NewReplay(t testing.TB, c *PubSubCapture) *Replay {
	r := &Replay{c: c}
	r.srv = httptest.NewServer(r)
	r.URL = r.srv.URL
	t.Cleanup(r.srv.Close)
	return r
}

// Play makes s the scenario whose calls are answered next.
func (r *Replay) Play(s PubSubScenario) {
	r.mu.Lock()
	r.steps, r.next = s.Steps, 0
	r.mu.Unlock()
}

// ServeHTTP implements http.Handler.
func (r *Replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	endpoint, _ := strings.CutPrefix(req.URL.Path, "/api/")
	raw, _ := io.ReadAll(io.LimitReader(req.Body, maxBody))
	token, _, _ := credential(req, paramsOf(raw))
	var user *PubSubUser
	for _, u := range r.c.Users {
		if u.Token == token {
			user = u
		}
	}
	if endpoint == "i" || endpoint == "i/webhooks/list" {
		if user == nil {
			ocean.Write(w, ocean.ErrAuthenticationFailed)
			return
		}
		if endpoint == "i/webhooks/list" {
			// The recorded users' hooks live in the sidecar: none in Ocean.
			writeRaw(w, http.StatusOK, []byte("[]"))
			return
		}
		writeRaw(w, http.StatusOK, user.I)
		return
	}
	r.mu.Lock()
	n := r.next
	var step *PubSubStep
	if n < len(r.steps) && r.steps[n].Endpoint == endpoint && user != nil && user.Name == r.steps[n].User {
		step = &r.steps[n]
		r.next++
	}
	before := r.Before
	r.mu.Unlock()
	if step == nil {
		ocean.Write(w, ocean.ErrInvalidParam)
		return
	}
	if before != nil {
		before(n)
	}
	writeRaw(w, step.Status, step.Response)
}

func paramsOf(raw []byte) map[string]any {
	p := map[string]any{}
	_ = json.Unmarshal(raw, &p)
	return p
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "private, max-age=0, must-revalidate")
	if status == http.StatusNoContent || body == nil {
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Package oceantest is a fake Ocean server for tests: an httptest server that
// answers the Ocean API from the real capture in
// ../shared/fixtures/ocean-capture/ (replayed byte for byte where a request
// matches a recorded one) and keeps a small in-memory model of users, follows,
// blocks, notes and reactions for everything the capture cannot answer.
package oceantest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// fixturesRel is where the capture lives relative to the module root.
const fixturesRel = "../shared/fixtures/ocean-capture"

// FixturesDir returns the absolute path of the Ocean capture: it walks up from
// the working directory to the first directory that holds a go.mod and has
// ../shared/fixtures/ocean-capture beside it. It returns "" when there is none.
func FixturesDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			cand := filepath.Join(dir, filepath.FromSlash(fixturesRel))
			if st, err := os.Stat(cand); err == nil && st.IsDir() {
				return filepath.Clean(cand)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Call is one recorded API call of api-responses.jsonl.
type Call struct {
	// Label is the capture's description of the call ("A follows B").
	Label string
	// Endpoint is the API endpoint without the /api/ prefix ("notes/create").
	Endpoint string
	// Request is the JSON body sent; tokens in it read "<redacted>".
	Request map[string]any
	// Status is the HTTP status Ocean answered.
	Status int
	// Response is Ocean's body as compact JSON in Ocean's key order; nil when
	// the capture holds none (204, or a body that was not recorded).
	Response json.RawMessage
	// TS is when the call was made (second precision).
	TS time.Time
}

// Delivery is one webhook delivery of deliveries.jsonl, as the receiver saw it.
type Delivery struct {
	// ReceivedAt is when the receiver got it.
	ReceivedAt time.Time
	// Method is the HTTP method (always POST).
	Method string
	// Path is the receiver's request path ("/hook/bob").
	Path string
	// Headers are the request headers in arrival order, names as sent.
	Headers [][2]string
	// BodyRaw is the body exactly as Ocean sent it.
	BodyRaw string
	// Body is the same body as compact JSON (equal to BodyRaw for Ocean's output).
	Body json.RawMessage
}

// Header returns the first value of the header name (case-insensitive) and
// whether it was present.
func (d Delivery) Header(name string) (string, bool) {
	for _, h := range d.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

type callLine struct {
	TS       string          `json:"ts"`
	Label    string          `json:"label"`
	Endpoint string          `json:"endpoint"`
	Request  map[string]any  `json:"request"`
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
}

type deliveryLine struct {
	ReceivedAt string          `json:"receivedAt"`
	Method     string          `json:"method"`
	Path       string          `json:"path"`
	Headers    [][2]string     `json:"headers"`
	BodyRaw    string          `json:"bodyRaw"`
	Body       json.RawMessage `json:"body"`
}

// LoadCalls reads api-responses.jsonl from FixturesDir, in recorded order.
// The result is the caller's own copy.
func LoadCalls() ([]Call, error) {
	c, err := loadCapture()
	if err != nil {
		return nil, err
	}
	out := make([]Call, len(c.calls))
	for i, call := range c.calls {
		call.Request = cloneJSON(call.Request).(map[string]any)
		call.Response = slices.Clone(call.Response)
		out[i] = call
	}
	return out, nil
}

// LoadDeliveries reads deliveries.jsonl from FixturesDir, in arrival order.
// The result is the caller's own copy.
func LoadDeliveries() ([]Delivery, error) {
	c, err := loadCapture()
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, len(c.deliveries))
	for i, d := range c.deliveries {
		d.Headers = slices.Clone(d.Headers)
		d.Body = slices.Clone(d.Body)
		out[i] = d
	}
	return out, nil
}

// capture is the parsed fixture directory, shared read-only by every Server.
type capture struct {
	calls      []Call
	deliveries []Delivery
	users      map[string]*userTemplate
}

var (
	captureMu    sync.Mutex
	captureCache = map[string]*capture{}
)

// loadCapture parses the fixtures once per directory (per test binary).
func loadCapture() (*capture, error) {
	dir := FixturesDir()
	if dir == "" {
		return nil, errors.New("oceantest: fixtures not found (no go.mod with " + fixturesRel + " above the working directory)")
	}
	captureMu.Lock()
	defer captureMu.Unlock()
	if c := captureCache[dir]; c != nil {
		return c, nil
	}
	calls, err := parseCalls(dir)
	if err != nil {
		return nil, err
	}
	deliveries, err := parseDeliveries(dir)
	if err != nil {
		return nil, err
	}
	users, err := userTemplates(calls)
	if err != nil {
		return nil, fmt.Errorf("oceantest: %w", err)
	}
	c := &capture{calls: calls, deliveries: deliveries, users: users}
	captureCache[dir] = c
	return c, nil
}

// cloneJSON deep-copies a value decoded by encoding/json.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneJSON(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = cloneJSON(e)
		}
		return s
	default:
		return v
	}
}

func parseCalls(dir string) ([]Call, error) {
	var out []Call
	err := readLines(dir, "api-responses.jsonl", func(line []byte) error {
		var l callLine
		if err := json.Unmarshal(line, &l); err != nil {
			return err
		}
		ts, err := time.Parse(time.RFC3339Nano, l.TS)
		if err != nil {
			return fmt.Errorf("ts: %w", err)
		}
		c := Call{Label: l.Label, Endpoint: strings.TrimPrefix(l.Endpoint, "/api/"),
			Request: l.Request, Status: l.Status, TS: ts}
		if c.Request == nil {
			c.Request = map[string]any{}
		}
		if len(l.Response) > 0 && !bytes.Equal(bytes.TrimSpace(l.Response), []byte("null")) {
			if c.Response, err = normalize(l.Response); err != nil {
				return fmt.Errorf("response: %w", err)
			}
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

func parseDeliveries(dir string) ([]Delivery, error) {
	var out []Delivery
	err := readLines(dir, "deliveries.jsonl", func(line []byte) error {
		var l deliveryLine
		if err := json.Unmarshal(line, &l); err != nil {
			return err
		}
		at, err := time.Parse(time.RFC3339Nano, l.ReceivedAt)
		if err != nil {
			return fmt.Errorf("receivedAt: %w", err)
		}
		body, err := normalize(l.Body)
		if err != nil {
			return fmt.Errorf("body: %w", err)
		}
		out = append(out, Delivery{ReceivedAt: at, Method: l.Method, Path: l.Path,
			Headers: l.Headers, BodyRaw: l.BodyRaw, Body: body})
		return nil
	})
	return out, err
}

func readLines(dir, name string, each func([]byte) error) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("open fixtures: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := each(line); err != nil {
			return fmt.Errorf("%s line %d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

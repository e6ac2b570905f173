package matchers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// captureDir holds the real Ocean traffic the spec was checked against.
var captureDir = filepath.Join("..", "..", "shared", "fixtures", "ocean-capture")

// apiCall is one line of api-responses.jsonl.
type apiCall struct {
	Label    string
	Endpoint string // without /api/
	Request  []byte // compact, without the redacted "i"
	Status   int
	Response []byte // compact, as Ocean sends it
}

// delivery is one line of deliveries.jsonl: the envelope Ocean posted.
type delivery struct {
	UserID string
	Type   string
	Body   string // the raw "body" member of the envelope, as sent
}

func readLines(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(captureDir, name))
	require.NoError(t, err, "the capture lives in shared/fixtures beside the repository")
	t.Cleanup(func() { _ = f.Close() })
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			lines = append(lines, sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	return lines
}

func compact(t testing.TB, raw string) []byte {
	t.Helper()
	if raw == "" || raw == "null" {
		return nil
	}
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, []byte(raw)))
	return b.Bytes()
}

// loadCalls returns the captured API calls in order.
func loadCalls(t testing.TB) []apiCall {
	t.Helper()
	var calls []apiCall
	for _, line := range readLines(t, "api-responses.jsonl") {
		require.True(t, gjson.Valid(line))
		v := gjson.Parse(line)
		calls = append(calls, apiCall{
			Label:    v.Get("label").Str,
			Endpoint: strings.TrimPrefix(v.Get("endpoint").Str, "/api/"),
			Request:  compact(t, v.Get(`request`).Raw),
			Status:   int(v.Get("status").Int()),
			Response: compact(t, v.Get("response").Raw),
		})
	}
	require.NotEmpty(t, calls)
	return calls
}

// loadDeliveries returns what Ocean delivered, body bytes exactly as sent.
func loadDeliveries(t testing.TB) []delivery {
	t.Helper()
	var out []delivery
	for _, line := range readLines(t, "deliveries.jsonl") {
		raw := gjson.Get(line, "bodyRaw").Str
		require.True(t, gjson.Valid(raw))
		env := gjson.Parse(raw)
		out = append(out, delivery{
			UserID: env.Get("userId").Str,
			Type:   env.Get("type").Str,
			Body:   env.Get("body").Raw,
		})
	}
	require.NotEmpty(t, out)
	return out
}

// callByLabel finds a captured call.
func callByLabel(t testing.TB, calls []apiCall, label string) apiCall {
	t.Helper()
	for _, c := range calls {
		if c.Label == label {
			return c
		}
	}
	require.Failf(t, "no captured call", "label %q", label)
	return apiCall{}
}

// selfView is a user's own view of themselves as the capture has it
// (/api/i: a superset of users/show of one's own id, secrets included).
func selfView(t testing.TB, calls []apiCall, who string) string {
	t.Helper()
	return string(callByLabel(t, calls, "i as "+who).Response)
}

package hooks

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestTestBodies compares every test payload with its golden file
// (testdata/testbodies/<type>.json, rewritten only with -update): the shapes
// of Ocean's WebhookTestService, wrapped like real deliveries.
func TestTestBodies(t *testing.T) {
	now := time.Date(2026, 11, 26, 20, 50, 24, 0, time.UTC)
	for _, typ := range webhook.UserEventTypes {
		t.Run(typ, func(t *testing.T) {
			body, ok := testBody(typ, now)
			require.True(t, ok)
			path := filepath.Join("testdata", "testbodies", typ+".json")
			var pretty bytes.Buffer
			require.NoError(t, json.Indent(&pretty, body, "", "  "))
			pretty.WriteByte('\n')
			if *update {
				require.NoError(t, os.WriteFile(path, pretty.Bytes(), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(want), pretty.String(), "same content and key order")
		})
	}
	for _, typ := range webhook.AdminEventTypes {
		_, ok := testBody(typ, now)
		assert.False(t, ok, "Ocean has no test payload for %s", typ)
	}
}

func TestTestBodiesAreWrappedLikeRealDeliveries(t *testing.T) {
	deliveries, err := oceantest.LoadDeliveries()
	require.NoError(t, err)
	now := time.Date(2026, 11, 26, 20, 50, 24, 0, time.UTC)
	seen := map[string]bool{}
	for _, d := range deliveries {
		var env struct {
			Type string                     `json:"type"`
			Body map[string]json.RawMessage `json:"body"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &env))
		if seen[env.Type] {
			continue
		}
		seen[env.Type] = true
		body, ok := testBody(env.Type, now)
		require.True(t, ok, env.Type)
		var ours map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(body, &ours))
		assert.Equal(t, keys(env.Body), keys(ours), "%s: same wrapper", env.Type)
	}
	assert.Len(t, seen, 7, "the capture has every delivered type but reaction")

	// The followed body is a UserLite: the dummy has Ocean's keys in Ocean's
	// order.
	for _, d := range deliveries {
		var env struct {
			Type string `json:"type"`
			Body struct {
				User json.RawMessage `json:"user"`
			} `json:"body"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &env))
		if env.Type != webhook.Followed {
			continue
		}
		assert.Equal(t, orderedKeys(t, env.Body.User), orderedKeys(t, marshal(dummyUser2.lite())))
		break
	}
}

func keys(m map[string]json.RawMessage) []string { return slices.Sorted(maps.Keys(m)) }

// orderedKeys lists the keys of a JSON object in document order.
func orderedKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var out []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		out = append(out, k.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return out
}

package queue

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// TestRecordEncoding: a record reads back as it was written, in every state
// and with every optional field, in far fewer bytes than JSON; a record an
// older version wrote as JSON is still read; a malformed one is an error.
func TestRecordEncoding(t *testing.T) {
	base := record{Hook: "9x1lb55h9jzs0004", User: "au1lb55h9jzs0004", Event: "0b7e5f2e-7d1c-4a53-9f0e-2d3c4b5a6978",
		Type: "note", Created: 1795768100123, State: webhook.StateReady, Due: 1795768100123}
	cases := []struct {
		name string
		rec  func(r record) record
	}{
		{"ready", func(r record) record { return r }},
		{"retried", func(r record) record { r.Attempts, r.Logged, r.Due = 3, 12, 1795768200456; return r }},
		{"delivered", func(r record) record {
			r.State, r.Expires, r.Logged = webhook.StateDelivered, 1796372900123, 1
			return r
		}},
		{"dead", func(r record) record { r.State, r.Attempts, r.Expires = webhook.StateDead, 10, 1796372900123; return r }},
		{"held", func(r record) record {
			r.State, r.Key, r.Occ = StateHeld, "5f8d7b1f0c9a6e3d2b4a59687f1e0d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3", "9x1lb55h9jzs0005"
			return r
		}},
		{"event not a UUID", func(r record) record { r.Event = "not-a-uuid"; return r }},
		{"key not a hash", func(r record) record { r.Key = "plain"; return r }},
		{"leased (older versions)", func(r record) record { r.State = webhook.StateLeased; return r }},
		{"due before 1970", func(r record) record { r.Due = -5; return r }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.rec(base)
			enc, err := rec.encode()
			require.NoError(t, err)
			got, err := decodeRecord(enc)
			require.NoError(t, err)
			assert.Equal(t, rec, got)
			js, err := json.Marshal(rec)
			require.NoError(t, err)
			assert.Less(t, len(enc), len(js)/2, "binary %d bytes, JSON %d", len(enc), len(js))
			old, err := decodeRecord(js)
			require.NoError(t, err, "JSON from an older version")
			assert.Equal(t, rec, old)
			for n := range enc { // every truncation is an error, never a panic
				_, err := decodeRecord(enc[:n])
				assert.Error(t, err, "cut at %d", n)
			}
		})
	}
	_, err := record{State: "lost"}.encode()
	assert.Error(t, err)
	_, err = decodeRecord(append([]byte{recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 1, 2))
	assert.ErrorIs(t, err, errBadRecord, "a huge length is an error, not an allocation")
}

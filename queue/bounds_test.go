package queue

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// TestListingIsBounded: a full page of deliveries whose every attempt has the
// largest response and error the log keeps, in the bytes that escape worst,
// lists in at most MaxListBytes of JSON; each delivery keeps only its latest
// keepAttempts in the store, the listing says how many it leaves out, and a
// delivery listed alone shows every attempt kept.
func TestListingIsBounded(t *testing.T) {
	const logged = keepAttempts + 3
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(newFakeClock()))
	events := make([]webhook.Event, MaxListLimit)
	for i := range events {
		events[i] = event("u1", "note", `{}`)
	}
	require.Equal(t, MaxListLimit, enqueue(t, q, events...))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range list(t, q, "h1") {
		for n := range logged {
			entry := webhook.Attempt{At: at.Add(time.Duration(n) * time.Second), Status: 500, Duration: 10_000,
				Response: strings.Repeat("\x01", responseLogCap), Error: strings.Repeat("<", 4*errorLogCap)}
			require.NoError(t, q.db.Update(func(txn *badger.Txn) error {
				rec, err := getRecord(txn, d.ID)
				if err != nil {
					return err
				}
				if err := appendAttempt(txn, d.ID, &rec, entry); err != nil {
					return err
				}
				return putRecord(txn, d.ID, rec)
			}))
		}
		assert.Len(t, keysWithPrefix(t, q, string(attemptPrefix(d.ID))), keepAttempts, "the store keeps the latest only")
	}

	ds, err := q.List(context.Background(), "h1", MaxListLimit, "")
	require.NoError(t, err)
	require.Len(t, ds, MaxListLimit, "every delivery is listed")
	body, err := json.Marshal(ds)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(body), MaxListBytes)
	shown := 0
	for _, d := range ds {
		assert.LessOrEqual(t, len(d.Attempts), keepAttempts)
		assert.Equal(t, logged, len(d.Attempts)+d.Omitted, "every attempt is shown or counted")
		for i, a := range d.Attempts {
			assert.Equal(t, at.Add(time.Duration(logged-len(d.Attempts)+i)*time.Second), a.At.UTC(), "the latest, oldest first")
			assert.Len(t, a.Error, errorLogCap)
		}
		shown += len(d.Attempts)
	}
	assert.Len(t, ds[0].Attempts, keepAttempts, "the newest delivery shows its whole log")
	assert.Less(t, shown, MaxListLimit*keepAttempts, "the size bound left attempts out")

	last := ds[len(ds)-2].ID
	alone, err := q.List(context.Background(), "h1", 1, last)
	require.NoError(t, err)
	require.Len(t, alone, 1)
	assert.Equal(t, ds[len(ds)-1].ID, alone[0].ID)
	assert.Len(t, alone[0].Attempts, keepAttempts, "listed alone, a delivery shows every attempt kept")
	assert.Equal(t, logged-keepAttempts, alone[0].Omitted)
}
